//! The OpenAI- and Ollama-compatible APIs: existing clients pointed at the
//! gateway get the service's pipeline (keys, limits, classification,
//! storage, metrics, traces, escalation) without learning `/api/chat`.
//!
//! | route | speaks |
//! |---|---|
//! | `POST /v1/chat/completions`, `GET /v1/models`, `GET /v1/models/{model}` | OpenAI ([`openai`]) |
//! | `POST /ollama/api/chat`, `POST /ollama/api/generate`, `GET /ollama/api/tags`, `GET /ollama/api/version`, `GET /ollama` | Ollama ([`ollama`]) |
//!
//! Each request is translated into one [`ExchangeRequest`] (the client's
//! conversation, model, system prompt and options in its `compat` part) and
//! sent to chat's `POST /chat`, exactly as `/api/chat` is; chat's answer (a
//! [`ChatResponse`], or its `token`/`done`/`error` events, read by
//! [`events`]) is rendered back in the client's format. These APIs are
//! stateless: the client sends the history, and no session is kept, unless
//! the `X-Chatbot-Session` header names one of ours, whose stored history is
//! then used and extended.
//!
//! Errors are rendered in each API's own shape by [`in_dialect`], whatever
//! produced them (the key check, the body reader, chat): OpenAI's
//! `{"error": {"message", "type", "param", "code"}}` or Ollama's
//! `{"error": "..."}`, with 422 answered as 400 as both APIs do.

pub mod ollama;
pub mod openai;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, ResponseError};
use bytes::Bytes;
use chatbot_common::api::{
    Api, Catalog, ChatResponse, Compat, ExchangeRequest, GenerationOptions, HistoryTurn, Role,
    USER_ID_MAX, validate_user_id,
};
use chatbot_common::error::{ApiError, ErrorBody, ErrorCode};
use chatbot_common::upstream::{LineBuffer, Relayed};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use uuid::Uuid;

use crate::access::Caller;
use crate::routes::{State, stream_slot, with_caller};

/// The header naming one of our sessions whose stored history an exchange
/// uses (and extends) instead of the history the client sent.
pub const SESSION_HEADER: &str = "x-chatbot-session";

/// The `X-Chatbot-Session` header, as the OpenAPI document describes it.
#[derive(utoipa::IntoParams)]
#[into_params(names("x-chatbot-session"), parameter_in = Header)]
pub struct SessionHeader(
    /// Continue this session of the same key and user: its stored history
    /// replaces the one sent, and the exchange is added to it (empty: none).
    #[param(
        required = false,
        pattern = "^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})?$"
    )]
    #[allow(dead_code)]
    String,
);

/// The header carrying the stored exchange's id (the row in `messages`).
pub const MESSAGE_ID_HEADER: &str = "x-chatbot-message-id";

/// The user of an exchange when the client names none and keys are off.
const ANONYMOUS: &str = "anonymous";

/// Which API's error shape to answer in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `{"error": {"message", "type", "param", "code"}}`.
    OpenAi,
    /// `{"error": "..."}`.
    Ollama,
}

/// An error of a compatible route: ours, and the request field it is about
/// (OpenAI's `param`).
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct CompatError {
    /// The error, with its stable code.
    pub error: ApiError,
    /// The request field at fault, if one is.
    pub param: Option<String>,
}

impl CompatError {
    /// 400 about the request field `param`.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            error: ApiError::invalid(message),
            param: Some(param.into()),
        }
    }
}

impl From<ApiError> for CompatError {
    fn from(error: ApiError) -> Self {
        Self { error, param: None }
    }
}

impl ResponseError for CompatError {
    fn status_code(&self) -> StatusCode {
        self.error.status_code()
    }

    // Our own shape; [`in_dialect`] renders it in the route's.
    fn error_response(&self) -> HttpResponse {
        self.error.error_response()
    }
}

impl Dialect {
    /// The status an error is answered with: 422 becomes 400.
    fn status(error: &ApiError) -> StatusCode {
        match error.code {
            ErrorCode::InvalidRequest => StatusCode::BAD_REQUEST,
            code => code.status(),
        }
    }

    /// The error's JSON body in this dialect.
    pub fn body(self, error: &ApiError, param: Option<&str>) -> serde_json::Value {
        match self {
            Self::OpenAi => openai::error_body(error, param),
            Self::Ollama => serde_json::json!({ "error": error.message }),
        }
    }

    /// The error's response in this dialect, with `Retry-After` when it has one.
    pub fn render(self, error: &ApiError, param: Option<&str>) -> HttpResponse {
        let mut response = HttpResponse::build(Self::status(error));
        if let Some(seconds) = error.retry_after {
            response.insert_header((actix_web::http::header::RETRY_AFTER, seconds));
        }
        response.json(self.body(error, param))
    }
}

/// Middleware rendering every error answer of a route in `dialect`: a
/// [`CompatError`] or [`ApiError`] a handler returned, or an answer in our
/// JSON shape made before the handler (401, 429, 503 of the key check, 403
/// of CORS, 405). Headers (`Retry-After`, `WWW-Authenticate`, `RateLimit-*`)
/// stay.
pub async fn in_dialect(
    dialect: Dialect,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody, BoxBody>>, actix_web::Error> {
    let response = next.call(req).await?;
    if !response.status().is_client_error() && !response.status().is_server_error() {
        return Ok(response.map_into_left_body());
    }
    let returned = response.response().error().and_then(|error| {
        if let Some(compat) = error.as_error::<CompatError>() {
            return Some((compat.error.clone(), compat.param.clone()));
        }
        error.as_error::<ApiError>().map(|e| (e.clone(), None))
    });
    let (request, answer) = response.into_parts();
    let (head, body) = answer.into_parts();
    let bytes = actix_web::body::to_bytes(body).await.unwrap_or_default();
    let ours = returned.or_else(|| {
        let body: ErrorBody = serde_json::from_slice(&bytes).ok()?;
        Some((body.error, None))
    });
    let Some((error, param)) = ours else {
        return Ok(
            ServiceResponse::new(request, head.set_body(BoxBody::new(bytes))).map_into_right_body(),
        );
    };
    let mut rendered = dialect.render(&error, param.as_deref());
    for (name, value) in head.headers() {
        if name != CONTENT_TYPE && name != CONTENT_LENGTH {
            rendered.headers_mut().insert(name.clone(), value.clone());
        }
    }
    Ok(ServiceResponse::new(request, rendered.map_into_boxed_body()).map_into_right_body())
}

/// The user an exchange is stored under: the one the client names (checked
/// as `/api/chat` checks `user_id`), else the API key's name (characters
/// outside `A-Z a-z 0-9 _ . @ : -` replaced by `_`), else `anonymous`.
pub fn user_of(
    req: &HttpRequest,
    named: Option<String>,
    param: &str,
) -> Result<String, CompatError> {
    if let Some(user) = named {
        validate_user_id(&user)
            .map_err(|e| CompatError::invalid(param, e.message.replace("user_id", param)))?;
        return Ok(user);
    }
    let key_name = req.extensions().get::<Caller>().map(|Caller(key)| {
        key.name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "_.@:-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .take(USER_ID_MAX)
            .collect::<String>()
    });
    Ok(key_name
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| ANONYMOUS.to_owned()))
}

/// 400 unless `body` is a JSON object (or not JSON at all, which the
/// parser reports): serde's derive would read an array field by field.
pub fn require_an_object(body: &[u8]) -> Result<(), CompatError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[' | b'"' | b'0'..=b'9' | b'-' | b't' | b'f' | b'n') => Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "the request body must be a JSON object",
        )
        .into()),
        _ => Ok(()),
    }
}

/// The session the `X-Chatbot-Session` header names, if any (an empty
/// header names none): a UUID in its hyphenated form, as `/api/chat`
/// returns it.
pub fn session_of(req: &HttpRequest) -> Result<Option<Uuid>, CompatError> {
    req.headers()
        .get(SESSION_HEADER)
        .filter(|value| !value.is_empty())
        .map(|value| {
            value
                .to_str()
                .ok()
                .filter(|v| v.len() == 36)
                .and_then(|v| Uuid::parse_str(v).ok())
                .ok_or_else(|| {
                    let sent: String = String::from_utf8_lossy(value.as_bytes())
                        .chars()
                        .take(64)
                        .collect();
                    CompatError::invalid(
                        SESSION_HEADER,
                        format!("{SESSION_HEADER} must be a session id (a UUID), not '{sent}'"),
                    )
                })
        })
        .transpose()
}

/// A message of a client's conversation, in either API.
#[derive(Debug)]
pub enum Said {
    /// A system (or OpenAI developer) message.
    System(String),
    /// A user message.
    User(String),
    /// An assistant message.
    Assistant(String),
}

/// A client's conversation, split as an exchange needs it.
#[derive(Debug, Default, PartialEq)]
pub struct Conversation {
    /// Every system message, joined by blank lines (`None`: none sent,
    /// `chat.system_prompt` applies).
    pub system: Option<String>,
    /// The turns before `message`.
    pub history: Vec<HistoryTurn>,
    /// The last user message: the one stored and classified.
    pub message: String,
    /// The assistant turns after it.
    pub after: Vec<HistoryTurn>,
}

impl Conversation {
    /// Splits `messages`; each user message must be a valid message
    /// (`max_chars`), and one must be there. Errors name
    /// `{param}[i].content`.
    pub fn split(messages: Vec<Said>, max_chars: usize, param: &str) -> Result<Self, CompatError> {
        let last_user = messages.iter().rposition(|m| matches!(m, Said::User(_)));
        let Some(last_user) = last_user else {
            return Err(CompatError::invalid(
                param,
                format!("{param} must include a message with the role user"),
            ));
        };
        let mut conversation = Self::default();
        let mut system = Vec::new();
        for (i, said) in messages.into_iter().enumerate() {
            let (role, content) = match said {
                Said::System(content) => {
                    system.push(content);
                    continue;
                }
                Said::User(content) => {
                    chatbot_common::api::validate_message(&content, max_chars).map_err(|e| {
                        CompatError::invalid(
                            format!("{param}[{i}].content"),
                            format!("{param}[{i}].content: {}", e.message),
                        )
                    })?;
                    (Role::User, content)
                }
                Said::Assistant(content) => (Role::Assistant, content),
            };
            if i == last_user {
                conversation.message = content;
            } else {
                let turn = HistoryTurn { role, content };
                if i < last_user {
                    conversation.history.push(turn)
                } else {
                    conversation.after.push(turn)
                }
            }
        }
        conversation.system = (!system.is_empty()).then(|| system.join("\n\n"));
        Ok(conversation)
    }
}

/// What a compatible request asks of an exchange, besides its conversation.
pub struct Asked {
    /// The API it came through.
    pub api: Api,
    /// The model named.
    pub model: String,
    /// Sampling options.
    pub options: GenerationOptions,
    /// Streamed or not.
    pub stream: bool,
}

impl Asked {
    /// What a request asks; the model must be named (400 `model`).
    pub fn new(
        api: Api,
        model: String,
        options: GenerationOptions,
        stream: bool,
    ) -> Result<Self, CompatError> {
        if model.trim().is_empty() {
            return Err(CompatError::invalid("model", "model is required"));
        }
        Ok(Self {
            api,
            model,
            options,
            stream,
        })
    }

    /// The exchange to send chat, with a new id (returned too): the user
    /// and session of the request ([`user_of`], [`session_of`]).
    pub fn exchange(
        self,
        req: &HttpRequest,
        user: Option<String>,
        user_param: &str,
        conversation: Conversation,
    ) -> Result<(ExchangeRequest, Uuid), CompatError> {
        let id = Uuid::new_v4();
        let exchange = ExchangeRequest {
            user_id: user_of(req, user, user_param)?,
            message: conversation.message,
            session_id: session_of(req)?,
            stream: self.stream,
            compat: Some(Compat {
                api: self.api,
                id,
                model: Some(self.model),
                system: conversation.system,
                history: conversation.history,
                after: conversation.after,
                options: self.options,
            }),
        };
        Ok((exchange, id))
    }
}

/// One of chat's stream events.
#[derive(Debug)]
pub enum ChatEvent {
    /// A piece of the reply.
    Token(String),
    /// The reply is complete.
    Done(Box<ChatResponse>),
    /// The exchange failed after its first token.
    Failed(ApiError),
}

/// What chat answered an exchange.
pub enum Answer {
    /// The whole reply.
    Whole(Box<ChatResponse>),
    /// The reply as it is made.
    Stream(BoxStream<'static, ChatEvent>),
}

/// What the response to an exchange sent to chat needs to be finished.
pub struct Pending {
    started: Instant,
    waited: Option<Duration>,
    held: Option<access::Slot>,
    id: Uuid,
}

/// Sends `exchange` to chat as `/api/chat` does (the key's stream slot for
/// a stream, the key named to chat, the upstream timeout for a whole answer).
pub async fn forward(
    req: &HttpRequest,
    state: &State,
    exchange: &ExchangeRequest,
    id: Uuid,
) -> Result<(Answer, Pending), CompatError> {
    let started = Instant::now();
    exchange.validate(state.max_message_chars)?;
    let held = stream_slot(req, exchange.stream).await?;
    let mut call = with_caller(req, state.chat.post("/chat")).json(exchange);
    if !exchange.stream {
        call = call.timeout(state.upstream_timeout);
    }
    let relayed = state.chat.forward(call).await?;
    let waited = relayed.llm_wait();
    let answer = match relayed {
        Relayed::Whole(_, body, _) => {
            let response = serde_json::from_slice(&body).map_err(|e| ApiError::internal(&e))?;
            Answer::Whole(Box::new(response))
        }
        Relayed::Events(response) => Answer::Stream(events(response.bytes_stream()).boxed()),
    };
    let pending = Pending {
        started,
        waited,
        held,
        id,
    };
    Ok((answer, pending))
}

/// A rendered reply: one JSON body, or a stream of `content_type`.
pub enum Reply {
    /// `application/json`.
    Json(Vec<u8>),
    /// Server-sent events or NDJSON.
    Stream(&'static str, BoxStream<'static, Bytes>),
}

impl Pending {
    /// The response carrying `reply`: it holds the stream slot until the
    /// stream ends, names the stored exchange, and records the overhead.
    pub fn respond(self, state: &State, reply: Reply) -> HttpResponse {
        let (mut response, streamed) = match reply {
            Reply::Json(body) => (
                HttpResponse::Ok()
                    .content_type("application/json")
                    .body(body),
                false,
            ),
            Reply::Stream(content_type, body) => {
                let held = self.held;
                let body = body.map(move |chunk| {
                    let _held = &held;
                    Ok::<_, std::convert::Infallible>(chunk)
                });
                let response = HttpResponse::Ok()
                    .content_type(content_type)
                    .insert_header(("Cache-Control", "no-cache"))
                    .insert_header(("X-Accel-Buffering", "no"))
                    .streaming(body);
                (response, true)
            }
        };
        if let Ok(id) = HeaderValue::from_str(&self.id.to_string()) {
            response
                .headers_mut()
                .insert(HeaderName::from_static(MESSAGE_ID_HEADER), id);
        }
        state
            .overhead
            .finish(&mut response, self.started, self.waited, streamed);
        response
    }
}

/// Reads chat's server-sent events (`event: token|done|error`, `data:`
/// JSON) from `bytes`. A stream that breaks or ends before `done` ends with
/// a [`ChatEvent::Failed`], so a client never takes a cut reply for a whole one.
pub fn events<E: 'static>(
    bytes: impl Stream<Item = Result<Bytes, E>> + Send + 'static,
) -> impl Stream<Item = ChatEvent> + Send + 'static {
    let parser = EventParser::default();
    futures::stream::unfold(
        (bytes.boxed(), parser, VecDeque::new()),
        |(mut bytes, mut parser, mut ready)| async move {
            loop {
                if let Some(event) = ready.pop_front() {
                    return Some((event, (bytes, parser, ready)));
                }
                if parser.finished {
                    return None;
                }
                match bytes.next().await {
                    Some(Ok(chunk)) => ready.extend(parser.push(&chunk)),
                    Some(Err(_)) | None => {
                        parser.finished = true;
                        ready.push_back(ChatEvent::Failed(ApiError::new(
                            ErrorCode::ServiceUnavailable,
                            "the chat service stopped in the middle of the reply",
                        )));
                    }
                }
            }
        },
    )
}

/// Turns lines of server-sent events into [`ChatEvent`]s.
#[derive(Default)]
struct EventParser {
    lines: LineBuffer,
    event: Option<String>,
    /// `done` or `error` was read: nothing follows.
    finished: bool,
}

impl EventParser {
    fn push(&mut self, chunk: &[u8]) -> Vec<ChatEvent> {
        let mut events = Vec::new();
        for line in self.lines.push(chunk) {
            if self.finished {
                break;
            }
            if let Some(name) = line.strip_prefix(b"event:") {
                self.event = Some(String::from_utf8_lossy(name.trim_ascii()).into_owned());
            } else if let Some(data) = line.strip_prefix(b"data:") {
                let event = self.event.take().unwrap_or_default();
                if let Some(parsed) = parse_event(&event, data.trim_ascii()) {
                    self.finished = !matches!(parsed, ChatEvent::Token(_));
                    events.push(parsed);
                }
            }
        }
        events
    }
}

fn parse_event(name: &str, data: &[u8]) -> Option<ChatEvent> {
    #[derive(serde::Deserialize)]
    struct Token {
        content: String,
    }
    let unreadable = || {
        ChatEvent::Failed(ApiError::new(
            ErrorCode::ServiceUnavailable,
            "the chat service sent an unreadable event",
        ))
    };
    Some(match name {
        "token" => serde_json::from_slice::<Token>(data)
            .map_or_else(|_| unreadable(), |t| ChatEvent::Token(t.content)),
        "done" => serde_json::from_slice(data)
            .map_or_else(|_| unreadable(), |r| ChatEvent::Done(Box::new(r))),
        "error" => serde_json::from_slice::<ErrorBody>(data)
            .map_or_else(|_| unreadable(), |b| ChatEvent::Failed(b.error)),
        _ => return None,
    })
}

/// Writes into the document what utoipa cannot derive from the types: the
/// `messages` of both chat requests must hold a user message (JSON
/// Schema's `contains`), `stop` takes at most 4 sequences, and a user
/// message's text parts are at least one.
pub fn refine_schemas(document: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::{AdditionalProperties, Schema};
    let Some(components) = document.components.as_mut() else {
        return;
    };
    for name in ["openai.ChatCompletionRequest", "ollama.ChatRequest"] {
        let Some(RefOr::T(Schema::Object(request))) = components.schemas.get_mut(name) else {
            continue;
        };
        if let Some(RefOr::T(Schema::Array(messages))) = request.properties.get_mut("messages") {
            let user = serde_json::json!({
                "type": "object",
                "properties": {"role": {"const": "user"}},
                "required": ["role"]
            });
            let mut extensions = messages.extensions.take().unwrap_or_default();
            extensions.insert("contains".to_owned(), user);
            messages.extensions = Some(extensions);
        }
    }
    let mut array_of = |name: &str, set: &dyn Fn(&mut utoipa::openapi::schema::Array)| {
        if let Some(RefOr::T(Schema::OneOf(one_of))) = components.schemas.get_mut(name) {
            for item in &mut one_of.items {
                if let RefOr::T(Schema::Array(array)) = item {
                    set(array);
                }
            }
        }
    };
    array_of("openai.Stop", &|array| array.max_items = Some(4));
    array_of("openai.UserContent", &|array| array.min_items = Some(1));
    // Each role's message takes only its own fields (serde's
    // `deny_unknown_fields` on a tagged enum, which utoipa leaves out).
    for name in ["openai.InputMessage", "ollama.Message"] {
        if let Some(RefOr::T(Schema::OneOf(one_of))) = components.schemas.get_mut(name) {
            for item in &mut one_of.items {
                if let RefOr::T(Schema::Object(message)) = item {
                    message.additional_properties =
                        Some(Box::new(AdditionalProperties::FreeForm(false)));
                }
            }
        }
    }
}

/// The failures of a compatible route, whose bodies are the schema
/// `schema` (each API's error shape; the statuses are the same).
fn failures(
    schema: &str,
) -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::Response>> {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    [
        ("400", "malformed JSON, invalid or unsupported fields"),
        ("401", "no API key, or an unknown one"),
        ("404", "unknown model, or session"),
        ("413", "body larger than the limit"),
        ("429", "over the key's limits"),
        ("502", "the LLM failed"),
        ("503", "the LLM or an internal service is unavailable"),
        ("504", "the LLM or an internal service timed out"),
    ]
    .into_iter()
    .map(|(status, description)| {
        let body = ContentBuilder::new()
            .schema(Some(Ref::from_schema_name(schema)))
            .build();
        let response = ResponseBuilder::new()
            .description(description)
            .content("application/json", body);
        (status.to_owned(), response.build().into())
    })
    .collect()
}

/// What the LLM backends serve (chat's `GET /models`).
pub async fn catalog(state: &State) -> Result<Catalog, CompatError> {
    let call = state.chat.get("/models").timeout(state.upstream_timeout);
    match state.chat.forward(call).await? {
        Relayed::Whole(_, body, _) => {
            serde_json::from_slice(&body).map_err(|e| ApiError::internal(&e).into())
        }
        Relayed::Events(_) => Err(ApiError::new(
            ErrorCode::ServiceUnavailable,
            "the chat service answered the model list with a stream",
        )
        .into()),
    }
}

/// Seconds since the Unix epoch (OpenAI's `created`).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A JSON value or object as bytes (serializing our own types cannot fail).
pub fn to_bytes<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(chunks: &[&str]) -> Vec<ChatEvent> {
        let stream = futures::stream::iter(
            chunks
                .iter()
                .map(|c| Ok::<_, std::io::Error>(Bytes::from(c.to_string())))
                .collect::<Vec<_>>(),
        );
        futures::executor::block_on(events(stream).collect())
    }

    const DONE: &str = r#"{"session_id":null,"message_id":"6f1c0a52-4b8e-4d1e-9a8e-0e6a4f0b9c11","reply":"Hi there","type":"greeting","urgency":"LOW","model":"m","response_time_ms":3,"usage":{"prompt_tokens":5,"completion_tokens":2},"finish_reason":"stop"}"#;

    #[test]
    fn events_split_across_chunks_are_read_whole() {
        let done = format!("event: done\ndata: {DONE}\n\n");
        let (a, b) = done.split_at(20);
        let events = parse(&[
            "event: tok",
            "en\ndata: {\"content\":\"Hi\"}\n\n",
            "event: token\ndata: {\"content\":\" there\"}\n\n",
            a,
            b,
        ]);
        assert!(matches!(&events[0], ChatEvent::Token(t) if t == "Hi"));
        assert!(matches!(&events[1], ChatEvent::Token(t) if t == " there"));
        assert!(matches!(&events[2], ChatEvent::Done(r) if r.reply == "Hi there"));
        assert_eq!(events.len(), 3);
    }

    #[test]
    fn a_stream_cut_before_done_ends_with_a_failure() {
        let events = parse(&["event: token\ndata: {\"content\":\"Hi\"}\n\n"]);
        assert_eq!(events.len(), 2);
        assert!(
            matches!(&events[1], ChatEvent::Failed(e) if e.code == ErrorCode::ServiceUnavailable)
        );
    }

    #[test]
    fn a_conversation_is_split_around_its_last_user_message() {
        let said = vec![
            Said::System("Be brief.".into()),
            Said::User("first".into()),
            Said::Assistant("an answer".into()),
            Said::System("And polite.".into()),
            Said::User("second".into()),
            Said::Assistant("Sure, ".into()),
        ];
        let conversation = Conversation::split(said, 100, "messages").unwrap();
        assert_eq!(
            conversation.system.as_deref(),
            Some("Be brief.\n\nAnd polite.")
        );
        assert_eq!(conversation.message, "second");
        let roles: Vec<Role> = conversation.history.iter().map(|t| t.role).collect();
        assert_eq!(roles, [Role::User, Role::Assistant]);
        assert_eq!(conversation.after.len(), 1);
        assert_eq!(conversation.after[0].content, "Sure, ");
    }

    #[test]
    fn a_conversation_without_a_valid_user_message_is_refused_naming_it() {
        let none = Conversation::split(vec![Said::System("s".into())], 100, "messages");
        assert_eq!(none.unwrap_err().param.as_deref(), Some("messages"));
        let blank = Conversation::split(
            vec![Said::User("ok".into()), Said::User(" ".into())],
            100,
            "messages",
        );
        let blank = blank.unwrap_err();
        assert_eq!(blank.param.as_deref(), Some("messages[1].content"));
        assert!(
            blank.error.message.contains("must not be empty"),
            "{}",
            blank.error.message
        );
        let long = Conversation::split(vec![Said::User("x".repeat(11))], 10, "prompt");
        assert_eq!(
            long.unwrap_err().param.as_deref(),
            Some("prompt[0].content")
        );
    }

    #[test]
    fn errors_take_each_dialect_shape_with_400_for_invalid_fields() {
        let invalid = CompatError::invalid("n", "only n = 1");
        let body = Dialect::OpenAi.body(&invalid.error, invalid.param.as_deref());
        assert_eq!(body["error"]["param"], "n");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(Dialect::status(&invalid.error), StatusCode::BAD_REQUEST);
        let limited = ApiError::new(ErrorCode::RateLimited, "slow down").retry_after(3);
        let body = Dialect::OpenAi.body(&limited, None);
        assert_eq!(body["error"]["code"], "rate_limit_exceeded");
        let response = Dialect::Ollama.render(&limited, None);
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers().get("retry-after").unwrap(), "3");
        assert_eq!(
            Dialect::Ollama.body(&limited, None),
            serde_json::json!({"error": "slow down"})
        );
        let down = ApiError::new(ErrorCode::LlmUnavailable, "down");
        assert_eq!(
            Dialect::OpenAi.body(&down, None)["error"]["type"],
            "server_error"
        );
    }

    #[test]
    fn an_error_event_is_passed_on_with_its_code() {
        let events = parse(&[
            "event: token\ndata: {\"content\":\"Hi\"}\n\n",
            "event: error\ndata: {\"error\":{\"code\":\"llm_timeout\",\"message\":\"slow\"}}\n\n",
        ]);
        assert!(matches!(&events[1], ChatEvent::Failed(e) if e.code == ErrorCode::LlmTimeout));
        assert_eq!(events.len(), 2);
    }
}
