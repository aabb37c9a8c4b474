//! The chat service's HTTP API (called by the gateway): `POST /chat`, one
//! exchange, and `GET /models`, what the LLM backends serve (the
//! [`Catalog`], from which the gateway lists models for the compatible APIs).
//!
//! Without `stream` the answer is one JSON [`ChatResponse`]. With `stream:
//! true` it is `text/event-stream`:
//!
//! ```text
//! event: token
//! data: {"content":"Hel"}
//!
//! event: done
//! data: {ChatResponse}
//! ```
//!
//! An LLM failure after the first token ends the stream with `event: error`
//! and `data: {"error": {"code", "message"}}`. A failure before any token is
//! an ordinary JSON error with its status (502, 503 or 504), so clients see
//! the same errors whether or not they stream.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use chatbot_common::api::{ChatResponse, ExchangeRequest, api_key_of};
use chatbot_common::body::read_json;
use chatbot_common::error::{ApiError, ErrorCode};
use chatbot_common::openapi::{ChatFailures, StreamEvent, limit_message_length};
use chatbot_common::server::resource;
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::exchange::{Exchange, Prepared};
use chatbot_common::api::Catalog;

/// The internal API, as `/openapi.json` describes it.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "chatbot chat service",
        description = "One exchange: classify, call the LLM, store the exchange (internal API)."
    ),
    paths(chat, models)
)]
struct InternalApi;

/// The document served at `/openapi.json`, with the configured message limit.
pub fn document(max_message_chars: usize) -> utoipa::openapi::OpenApi {
    let mut document = <InternalApi as utoipa::OpenApi>::openapi();
    limit_message_length(&mut document, max_message_chars);
    document
}

/// Shared state of the routes.
pub struct State {
    /// The exchange pipeline.
    pub exchange: Arc<Exchange>,
    /// Largest accepted body, in bytes.
    pub max_body_bytes: usize,
}

/// Registers the routes.
pub fn configure(cfg: &mut web::ServiceConfig, state: Arc<State>) {
    cfg.app_data(web::Data::from(state))
        .service(resource("/chat", "POST").route(web::post().to(chat)))
        .service(resource("/models", "GET").route(web::get().to(models)));
}

/// What the LLM backends serve, as they said at the last look.
#[utoipa::path(get, path = "/models", responses(
    (status = 200, description = "the backends' models and version", body = Catalog)
))]
pub(crate) async fn models(state: web::Data<State>) -> HttpResponse {
    HttpResponse::Ok().json(state.exchange.llm.catalog())
}

/// One exchange: classify, call the LLM, store it.
///
/// With `stream: true` the answer is `text/event-stream` (see the module
/// docs); the failures before the first token are the same JSON errors.
#[utoipa::path(post, path = "/chat", request_body = ExchangeRequest, responses(
    (status = 200, description = "the reply", content(
        (ChatResponse = "application/json"),
        (StreamEvent = "text/event-stream")
    )),
    ChatFailures
))]
pub(crate) async fn chat(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<State>,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let request: ExchangeRequest = read_json(&req, body, state.max_body_bytes).await?;
    let api_key = api_key_of(req.headers())?;
    let exchange = state.exchange.clone();
    if request.stream {
        let prepared = exchange.prepare(request, api_key, started).await?;
        return stream(exchange, prepared).await;
    }
    let (response, llm_time) = exchange.run(request, api_key, started).await?;
    Ok(HttpResponse::Ok()
        .insert_header(llm_wait_header(llm_time))
        .json(response))
}

/// How long the LLM kept this request waiting: the whole call for a JSON
/// answer, the wait for the first token for a stream. The gateway subtracts
/// it to measure what the services themselves add.
fn llm_wait_header(wait: std::time::Duration) -> (&'static str, String) {
    (
        chatbot_common::upstream::LLM_WAIT_HEADER,
        wait.as_micros().to_string(),
    )
}

enum Event {
    Token(String),
    Done(Box<ChatResponse>),
    Failed(ApiError),
}

impl Event {
    fn to_sse(&self) -> Bytes {
        let (name, data) = match self {
            Self::Token(content) => (
                "token",
                serde_json::json!({ "content": content }).to_string(),
            ),
            Self::Done(response) => ("done", serde_json::to_string(response).unwrap_or_default()),
            Self::Failed(error) => ("error", error.to_json()),
        };
        Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
    }
}

async fn stream(exchange: Arc<Exchange>, prepared: Prepared) -> Result<HttpResponse, ApiError> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let worker = exchange.clone();
    let exchange_task = async move {
        let tokens = tx.clone();
        let (result, _) = worker
            .complete(prepared, |t| {
                let _ = tokens.send(Event::Token(t.to_owned()));
            })
            .await;
        let last = match result {
            Ok(response) => Event::Done(Box::new(response)),
            Err(error) => Event::Failed(error),
        };
        let _ = tx.send(last);
    };
    exchange.inflight.spawn(exchange_task);
    let waiting = Instant::now();
    let first = match rx.recv().await {
        Some(Event::Failed(error)) => return Err(error),
        Some(event) => event,
        None => {
            return Err(ApiError::new(
                ErrorCode::Internal,
                "the exchange ended without an answer",
            ));
        }
    };
    let rest = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let body = futures::stream::once(async move { first })
        .chain(rest)
        .map(|event| Ok::<_, Infallible>(event.to_sse()));
    Ok(HttpResponse::Ok()
        .insert_header(llm_wait_header(waiting.elapsed()))
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}
