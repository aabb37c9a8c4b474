//! The public routes.
//!
//! | route | forwards to |
//! |---|---|
//! | `POST /api/chat` | chat `POST /chat` (JSON or an SSE stream relayed as it arrives) |
//! | `GET /api/sessions/{id}` | session `GET /sessions/{id}` |
//! | `DELETE /api/sessions/{id}` | session `DELETE /sessions/{id}` |
//! | `POST /v1/chat/completions`, `/ollama/api/chat`, `/ollama/api/generate` | chat `POST /chat`, translated ([`crate::compat`]) |
//! | `GET /v1/models`, `/ollama/api/tags`, `/ollama/api/version` | chat `GET /models`, translated |
//!
//! With API keys on, the [`crate::access`] middleware admits each `/api/*`
//! request first, and the key's id goes to chat and session in
//! `x-chatbot-api-key-id`, so a session stays with the key that made it.
//! Then requests are validated here; upstream errors in our JSON format pass
//! through unchanged, and an unreachable or slow upstream becomes 503 or 504.

use std::time::{Duration, Instant};

use actix_web::middleware::{Condition, from_fn};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use chatbot_common::api::{
    API_KEY_HEADER, ChatRequest, ChatResponse, SessionView, parse_session_id,
};
use chatbot_common::body::read_json;
use chatbot_common::config::CorsSettings;
use chatbot_common::error::ApiError;
use chatbot_common::openapi::{
    AccessFailures, BearerKey, ChatFailures, SessionFailures, SessionId, StreamEvent, limit_length,
    limit_message_length,
};
use chatbot_common::server::resource;
use chatbot_common::upstream::Upstream;
use reqwest::Method;

use ::access::Slot;

use crate::access::{Access, Caller, guard};
use crate::compat::{Dialect, in_dialect, ollama, openai};

/// The public API, as `/openapi.json` describes it.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "chatbot gateway",
        description = "The public API of the chatbot service. Errors are \
            `{\"error\": {\"code\", \"message\"}}` with stable codes."
    ),
    paths(
        chat,
        get_session,
        delete_session,
        crate::health::health,
        openai::completions,
        openai::models,
        openai::model,
        ollama::chat,
        ollama::generate,
        ollama::tags,
        ollama::version,
        ollama::root
    ),
    components(schemas(openai::ErrorBody, openai::ChatCompletionChunk, ollama::ErrorBody)),
    modifiers(&BearerKey)
)]
struct PublicApi;

/// The document served at `/openapi.json`, with the configured message limit.
pub fn document(max_message_chars: usize) -> utoipa::openapi::OpenApi {
    let mut document = <PublicApi as utoipa::OpenApi>::openapi();
    limit_message_length(&mut document, max_message_chars);
    limit_length(&mut document, "openai.UserText", None, max_message_chars);
    limit_length(
        &mut document,
        "ollama.GenerateRequest",
        Some("prompt"),
        max_message_chars,
    );
    crate::compat::refine_schemas(&mut document);
    document
}

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
    /// The health aggregator's verdict, which `/health` serves.
    pub health: crate::health::HealthRelay,
    /// What the service adds to chat requests.
    pub overhead: crate::overhead::Overhead,
}

/// Registers the routes; `access` guards the `/api/*` ones (none: open),
/// and `cors` lets browsers on the allowed origins call them.
pub fn configure(
    cfg: &mut web::ServiceConfig,
    state: std::sync::Arc<State>,
    access: Option<web::Data<Access>>,
    cors: &CorsSettings,
) {
    if let Some(access) = access {
        cfg.app_data(access);
    }
    // Outermost last: CORS (a preflight carries no key), then the key check.
    let api = |path: &str, allow: &'static str| {
        let cors = crate::cors::cors(cors);
        resource(path, allow)
            .wrap(from_fn(guard))
            .wrap(Condition::new(cors.is_some(), cors.unwrap_or_default()))
            .wrap(from_fn(crate::cors::json_errors))
    };
    // The compatible APIs: the same guard, errors in their own shapes.
    let compat = |path: &str, allow: &'static str, dialect: Dialect| {
        api(path, allow).wrap(from_fn(move |req, next| in_dialect(dialect, req, next)))
    };
    cfg.app_data(web::Data::from(state))
        .service(api("/api/chat", "POST").route(web::post().to(chat)))
        .service(
            compat("/v1/chat/completions", "POST", Dialect::OpenAi)
                .route(web::post().to(openai::completions)),
        )
        .service(compat("/v1/models", "GET", Dialect::OpenAi).route(web::get().to(openai::models)))
        .service(
            compat("/v1/models/{model}", "GET", Dialect::OpenAi)
                .route(web::get().to(openai::model)),
        )
        .service(
            compat("/ollama/api/chat", "POST", Dialect::Ollama).route(web::post().to(ollama::chat)),
        )
        .service(
            compat("/ollama/api/generate", "POST", Dialect::Ollama)
                .route(web::post().to(ollama::generate)),
        )
        .service(
            compat("/ollama/api/tags", "GET", Dialect::Ollama).route(web::get().to(ollama::tags)),
        )
        .service(
            compat("/ollama/api/version", "GET", Dialect::Ollama)
                .route(web::get().to(ollama::version)),
        )
        .service(resource("/ollama", "GET").route(web::get().to(ollama::root)))
        .service(resource("/health", "GET").route(web::get().to(crate::health::health)))
        .service(
            api("/api/sessions/{id}", "GET, DELETE")
                .route(web::get().to(get_session))
                .route(web::delete().to(delete_session)),
        );
}

/// Send a message and get the LLM's reply.
///
/// With `stream: true` the answer is `text/event-stream`: `token` events
/// (`{"content"}`), then one `done` event carrying the ChatResponse; an LLM
/// failure after the first token ends the stream with an `error` event
/// carrying the error body.
#[utoipa::path(post, path = "/api/chat", operation_id = "chat", request_body = ChatRequest,
    responses(
        (status = 200, description = "the reply", content(
            (ChatResponse = "application/json"),
            (StreamEvent = "text/event-stream")
        ), links(
            ("GetSession" = (operation_id = "getSession", parameters(("id" = "$response.body#/session_id")))),
            ("DeleteSession" = (operation_id = "deleteSession", parameters(("id" = "$response.body#/session_id"))))
        )),
        ChatFailures,
        AccessFailures
    ),
    security(("api_key" = []))
)]
pub(crate) async fn chat(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<State>,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let request: ChatRequest = read_json(&req, body, state.max_body_bytes).await?;
    request.validate(state.max_message_chars)?;
    let slot = stream_slot(&req, request.stream).await?;
    let mut call = with_caller(&req, state.chat.post("/chat")).json(&request);
    if !request.stream {
        call = call.timeout(state.upstream_timeout);
    }
    let relayed = state.chat.forward(call).await?;
    let waited = relayed.llm_wait();
    let mut response = relayed.into_response_holding(slot);
    state
        .overhead
        .finish(&mut response, started, waited, request.stream);
    Ok(response)
}

/// A stream slot of the request's key for a streamed chat (none needed
/// otherwise, or with keys off); 429 when all are taken.
pub(crate) async fn stream_slot(
    req: &HttpRequest,
    streamed: bool,
) -> Result<Option<Slot>, ApiError> {
    let caller = req.extensions().get::<Caller>().cloned();
    match (streamed, caller, req.app_data::<web::Data<Access>>()) {
        (true, Some(Caller(key)), Some(access)) => access.stream_slot(&key).await.map(Some),
        _ => Ok(None),
    }
}

/// Names the request's API key (if auth is on) to chat or session, which
/// keep each session to its key.
pub(crate) fn with_caller(
    req: &HttpRequest,
    call: reqwest::RequestBuilder,
) -> reqwest::RequestBuilder {
    match req.extensions().get::<Caller>() {
        Some(Caller(key)) => call.header(API_KEY_HEADER, key.id.to_string()),
        None => call,
    }
}

async fn session_call(
    req: &HttpRequest,
    state: &State,
    method: Method,
    raw_id: &str,
) -> Result<HttpResponse, ApiError> {
    let id = parse_session_id(raw_id)?;
    let call = with_caller(
        req,
        state.session.request(method, &format!("/sessions/{id}")),
    )
    .timeout(state.upstream_timeout);
    let relayed = state.session.forward(call).await?;
    Ok(relayed.into_response())
}

/// A session with its turns, oldest first.
#[utoipa::path(get, path = "/api/sessions/{id}", operation_id = "getSession", params(SessionId),
    responses((status = 200, description = "the session", body = SessionView), SessionFailures, AccessFailures),
    security(("api_key" = []))
)]
pub(crate) async fn get_session(
    req: HttpRequest,
    id: web::Path<String>,
    state: web::Data<State>,
) -> Result<HttpResponse, ApiError> {
    session_call(&req, &state, Method::GET, &id).await
}

/// Delete a session and its context.
#[utoipa::path(delete, path = "/api/sessions/{id}", operation_id = "deleteSession", params(SessionId),
    responses((status = 204, description = "deleted"), SessionFailures, AccessFailures),
    security(("api_key" = []))
)]
pub(crate) async fn delete_session(
    req: HttpRequest,
    id: web::Path<String>,
    state: web::Data<State>,
) -> Result<HttpResponse, ApiError> {
    session_call(&req, &state, Method::DELETE, &id).await
}
