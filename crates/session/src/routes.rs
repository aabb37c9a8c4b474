//! The session service's HTTP API (internal: called by the gateway and chat).
//!
//! | route | answer |
//! |---|---|
//! | `POST /sessions` `{user_id}` | 201 the new session |
//! | `GET /sessions/{id}` | 200 the session with its turns, 404 unknown |
//! | `POST /sessions/{id}/turns` `{turns, create_for?}` | 200 `{session_id, turn_count}`, 404 unknown (unless `create_for` names the user to create it for) |
//! | `DELETE /sessions/{id}` | 204, 404 unknown |
//! | `GET /stats` | 200 `{active_sessions}` |

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};
use chatbot_common::api::{AppendTurns, CreateSession, parse_session_id, validate_user_id};
use chatbot_common::body::read_json;
use chatbot_common::error::{ApiError, ErrorChain, ErrorCode};
use chatbot_common::server::resource;
use uuid::Uuid;

use crate::store::{SessionStore, StoreError};

/// Largest accepted body: a few turns of maximum-length messages.
const MAX_BODY: usize = 1024 * 1024;

/// The store.
#[derive(Clone)]
pub struct State {
    /// Sessions in Redis.
    pub store: Arc<SessionStore>,
}

impl State {
    /// Runs one store operation, mapping its failure to 503.
    async fn with_store<T, F, Fut>(&self, op: F) -> Result<T, ApiError>
    where
        F: FnOnce(Arc<SessionStore>) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        op(self.store.clone()).await.map_err(|e| unavailable(&e))
    }
}

type Store = web::Data<State>;

/// Registers the routes.
pub fn configure(cfg: &mut web::ServiceConfig, state: State) {
    cfg.app_data(web::Data::new(state))
        .service(resource("/sessions", "POST").route(web::post().to(create)))
        .service(resource("/stats", "GET").route(web::get().to(stats)))
        .service(
            resource("/sessions/{id}", "GET, DELETE")
                .route(web::get().to(get))
                .route(web::delete().to(delete)),
        )
        .service(resource("/sessions/{id}/turns", "POST").route(web::post().to(append)));
}

fn unavailable(error: &StoreError) -> ApiError {
    tracing::error!(error = %ErrorChain(error), "session store failed");
    ApiError::new(
        ErrorCode::ServiceUnavailable,
        "the session store (Redis) is unavailable",
    )
}

fn not_found(id: Uuid) -> ApiError {
    ApiError::new(
        ErrorCode::SessionNotFound,
        format!("session {id} does not exist or has expired"),
    )
}

async fn create(
    req: HttpRequest,
    body: web::Payload,
    store: Store,
) -> Result<HttpResponse, ApiError> {
    let body: CreateSession = read_json(&req, body, MAX_BODY).await?;
    validate_user_id(&body.user_id)?;
    let session = store
        .with_store(|s| async move { s.create(&body.user_id).await })
        .await?;
    Ok(HttpResponse::Created().json(session))
}

async fn get(id: web::Path<String>, store: Store) -> Result<HttpResponse, ApiError> {
    let id = parse_session_id(&id)?;
    match store.with_store(|s| async move { s.get(id).await }).await? {
        Some(session) => Ok(HttpResponse::Ok().json(session)),
        None => Err(not_found(id)),
    }
}

async fn append(
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Payload,
    store: Store,
) -> Result<HttpResponse, ApiError> {
    let id = parse_session_id(&id)?;
    let body: AppendTurns = read_json(&req, body, MAX_BODY).await?;
    if let Some(user_id) = &body.create_for {
        validate_user_id(user_id)?;
    }
    match store
        .with_store(|s| async move { s.append(id, &body.turns, body.create_for.as_deref()).await })
        .await?
    {
        Some(count) => {
            Ok(HttpResponse::Ok().json(serde_json::json!({"session_id": id, "turn_count": count})))
        }
        None => Err(not_found(id)),
    }
}

async fn delete(id: web::Path<String>, store: Store) -> Result<HttpResponse, ApiError> {
    let id = parse_session_id(&id)?;
    if store
        .with_store(|s| async move { s.delete(id).await })
        .await?
    {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(not_found(id))
    }
}

async fn stats(store: Store) -> Result<HttpResponse, ApiError> {
    let active = store
        .with_store(|s| async move { s.count_active().await })
        .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"active_sessions": active})))
}
