//! The session service's HTTP API (internal: called by the gateway).
//!
//! | route | answer |
//! |---|---|
//! | `GET /sessions/{id}` | 200 the session with its turns, 404 unknown |
//! | `DELETE /sessions/{id}` | 204, 404 unknown |
//! | `GET /stats` | 200 `{active_sessions}` |
//!
//! A session read or deleted with another API key (the gateway's
//! `x-chatbot-api-key-id`) than the one that made it is answered 404, as
//! an unknown one.
//!
//! Sessions are created and appended to by chat, through the same
//! [`session_store`] library, in the step that stores an exchange: there is
//! no HTTP route for writing turns.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};
use chatbot_common::api::{SessionView, api_key_of, parse_session_id};
use chatbot_common::error::{ApiError, ErrorBody, ErrorChain, ErrorCode};
use chatbot_common::openapi::{SessionFailures, SessionId};
use chatbot_common::server::resource;
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

use session_store::{SessionStore, StoreError};

/// The internal API, as `/openapi.json` describes it.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "chatbot session service",
        description = "Conversation context in Redis (internal API)."
    ),
    paths(get, delete, stats)
)]
pub struct InternalApi;

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
        .service(resource("/stats", "GET").route(web::get().to(stats)))
        .service(
            resource("/sessions/{id}", "GET, DELETE")
                .route(web::get().to(get))
                .route(web::delete().to(delete)),
        );
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

/// A session with its turns, oldest first.
#[utoipa::path(get, path = "/sessions/{id}", params(SessionId),
    responses((status = 200, description = "the session", body = SessionView), SessionFailures)
)]
pub(crate) async fn get(
    req: HttpRequest,
    id: web::Path<String>,
    store: Store,
) -> Result<HttpResponse, ApiError> {
    let id = parse_session_id(&id)?;
    let key = api_key_of(req.headers())?;
    match store
        .with_store(|s| async move { s.get(id, key).await })
        .await?
    {
        Some(session) => Ok(HttpResponse::Ok().json(session)),
        None => Err(not_found(id)),
    }
}

/// Delete a session.
#[utoipa::path(delete, path = "/sessions/{id}", params(SessionId),
    responses((status = 204, description = "deleted"), SessionFailures)
)]
pub(crate) async fn delete(
    req: HttpRequest,
    id: web::Path<String>,
    store: Store,
) -> Result<HttpResponse, ApiError> {
    let id = parse_session_id(&id)?;
    let key = api_key_of(req.headers())?;
    if store
        .with_store(|s| async move { s.delete(id, key).await })
        .await?
    {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(not_found(id))
    }
}

/// Active sessions (one `ZCOUNT`).
#[derive(serde::Serialize, ToSchema)]
struct Stats {
    /// Sessions that have not expired.
    active_sessions: u64,
}

/// Active sessions.
#[utoipa::path(get, path = "/stats", responses(
    (status = 200, description = "counts", body = Stats),
    (status = 503, description = "the session store is unavailable", body = ErrorBody)
))]
pub(crate) async fn stats(store: Store) -> Result<HttpResponse, ApiError> {
    let active_sessions = store
        .with_store(|s| async move { s.count_active().await })
        .await?;
    Ok(HttpResponse::Ok().json(Stats { active_sessions }))
}
