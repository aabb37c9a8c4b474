//! The session service's HTTP API (internal: called by the gateway and chat).
//!
//! | route | answer |
//! |---|---|
//! | `POST /sessions` `{user_id}` | 201 the new session |
//! | `GET /sessions/{id}` | 200 the session with its turns, 404 unknown |
//! | `POST /sessions/{id}/turns` `{turns}` | 200 `{session_id, turn_count}`, 404 unknown |
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

type Store = web::Data<Arc<SessionStore>>;

/// Registers the routes.
pub fn configure(cfg: &mut web::ServiceConfig, store: Arc<SessionStore>) {
    cfg.app_data(web::Data::new(store))
        .service(resource("/sessions").route(web::post().to(create)))
        .service(resource("/stats").route(web::get().to(stats)))
        .service(
            resource("/sessions/{id}")
                .route(web::get().to(get))
                .route(web::delete().to(delete)),
        )
        .service(resource("/sessions/{id}/turns").route(web::post().to(append)));
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
        .create(&body.user_id)
        .await
        .map_err(|e| unavailable(&e))?;
    Ok(HttpResponse::Created().json(session))
}

async fn get(id: web::Path<String>, store: Store) -> Result<HttpResponse, ApiError> {
    let id = parse_session_id(&id)?;
    match store.get(id).await.map_err(|e| unavailable(&e))? {
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
    match store
        .append(id, &body.turns)
        .await
        .map_err(|e| unavailable(&e))?
    {
        Some(count) => {
            Ok(HttpResponse::Ok().json(serde_json::json!({"session_id": id, "turn_count": count})))
        }
        None => Err(not_found(id)),
    }
}

async fn delete(id: web::Path<String>, store: Store) -> Result<HttpResponse, ApiError> {
    let id = parse_session_id(&id)?;
    if store.delete(id).await.map_err(|e| unavailable(&e))? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(not_found(id))
    }
}

async fn stats(store: Store) -> Result<HttpResponse, ApiError> {
    let active = store.count_active().await.map_err(|e| unavailable(&e))?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"active_sessions": active})))
}
