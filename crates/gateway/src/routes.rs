//! The public routes.
//!
//! | route | forwards to |
//! |---|---|
//! | `POST /api/chat` | chat `POST /chat` (JSON or an SSE stream relayed as it arrives) |
//! | `GET /api/sessions/{id}` | session `GET /sessions/{id}` |
//! | `DELETE /api/sessions/{id}` | session `DELETE /sessions/{id}` |
//!
//! Requests are validated here first; upstream errors in our JSON format pass
//! through unchanged, and an unreachable or slow upstream becomes 503 or 504.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use chatbot_common::api::{ChatRequest, parse_session_id};
use chatbot_common::body::read_json;
use chatbot_common::error::{ApiError, ErrorCode};
use chatbot_common::server::resource;
use chatbot_common::upstream::{Upstream, relay_json};
use futures::StreamExt;

/// Shared state of the routes.
pub struct State {
    /// The chat service.
    pub chat: Upstream,
    /// The session service.
    pub session: Upstream,
    /// Largest accepted body, in bytes.
    pub max_body_bytes: usize,
    /// Longest accepted message, in characters.
    pub max_message_chars: usize,
    /// Bound of a non-streamed upstream call.
    pub upstream_timeout: Duration,
}

/// Registers the routes.
pub fn configure(cfg: &mut web::ServiceConfig, state: Arc<State>) {
    cfg.app_data(web::Data::from(state))
        .service(resource("/api/chat").route(web::post().to(chat)))
        .service(
            resource("/api/sessions/{id}")
                .route(web::get().to(get_session))
                .route(web::delete().to(delete_session)),
        );
}

async fn chat(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<State>,
) -> Result<HttpResponse, ApiError> {
    let request: ChatRequest = read_json(&req, body, state.max_body_bytes).await?;
    request.validate(state.max_message_chars)?;
    let mut call = state
        .chat
        .client()
        .post(state.chat.url("/chat"))
        .json(&request);
    if !request.stream {
        call = call.timeout(state.upstream_timeout);
    }
    let response = call
        .send()
        .await
        .map_err(|e| state.chat.transport_error(&e))?;
    if !response.status().is_success() {
        return Err(state.chat.error_from(response).await);
    }
    if is_event_stream(&response) {
        return Ok(relay_stream(response));
    }
    relay_json(response)
        .await
        .map_err(|e| state.chat.transport_error(&e))
}

fn is_event_stream(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}

/// Relays an SSE stream; if chat's stream breaks, the client gets a final
/// `error` event instead of a silently cut reply.
fn relay_stream(response: reqwest::Response) -> HttpResponse {
    let body = response.bytes_stream().scan(false, |failed, item| {
        if *failed {
            return futures::future::ready(None);
        }
        let bytes = item.unwrap_or_else(|error| {
            tracing::warn!(%error, "chat stream broke");
            *failed = true;
            let error = ApiError::new(
                ErrorCode::ServiceUnavailable,
                "the chat service stopped in the middle of the reply",
            );
            Bytes::from(format!("\n\nevent: error\ndata: {}\n\n", error.to_json()))
        });
        futures::future::ready(Some(Ok::<_, std::convert::Infallible>(bytes)))
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body)
}

async fn get_session(
    id: web::Path<String>,
    state: web::Data<State>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_session_id(&id)?;
    let url = state.session.url(&format!("/sessions/{id}"));
    let call = state
        .session
        .client()
        .get(url)
        .timeout(state.upstream_timeout);
    let response = call
        .send()
        .await
        .map_err(|e| state.session.transport_error(&e))?;
    if !response.status().is_success() {
        return Err(state.session.error_from(response).await);
    }
    relay_json(response)
        .await
        .map_err(|e| state.session.transport_error(&e))
}

async fn delete_session(
    id: web::Path<String>,
    state: web::Data<State>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_session_id(&id)?;
    let url = state.session.url(&format!("/sessions/{id}"));
    let call = state
        .session
        .client()
        .delete(url)
        .timeout(state.upstream_timeout);
    let response = call
        .send()
        .await
        .map_err(|e| state.session.transport_error(&e))?;
    if response.status() != StatusCode::NO_CONTENT.as_u16() {
        return Err(state.session.error_from(response).await);
    }
    Ok(HttpResponse::NoContent().finish())
}
