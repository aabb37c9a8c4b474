//! The Ollama-compatible API under `/ollama` (a client's base URL becomes
//! `http://gateway:3001/ollama`): `POST /api/chat`, `POST /api/generate`,
//! `GET /api/tags`, `GET /api/version` and `GET /` ("Ollama is running").
//!
//! Answers are Ollama's: one JSON object, or NDJSON lines (`stream`
//! defaults to true, as in Ollama), the last with `done: true`,
//! `done_reason` and the durations and token counts; a failure after the
//! first line is a line `{"error": "..."}`. `options` takes Ollama's
//! sampling options (`temperature`, `top_p`, `top_k`, `min_p`, `seed`,
//! `num_predict`, `num_ctx`, `stop`, the three penalties); any other option,
//! and `format`, `tools`, images, `raw`, `template`, `suffix` or `context`,
//! is refused with a 400 naming it. `keep_alive` is accepted and left to the
//! backends' own setting. A generate with an empty prompt answers at once
//! with `done_reason: "load"`, as Ollama does.

use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use chatbot_common::api::{Api, ChatResponse, GenerationOptions, object_only};
use chatbot_common::body::read_limited;
use chatbot_common::error::ApiError;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    Answer, Asked, ChatEvent, CompatError, Conversation, Dialect, Reply, Said, forward, to_bytes,
};
use crate::routes::State;

/// `POST /api/chat`'s body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ollama::ChatRequest)]
pub struct ChatRequest {
    /// A model the LLM backends serve (`GET /api/tags`).
    #[schema(min_length = 1)]
    pub model: String,
    /// The conversation, oldest first. The last user message is the one
    /// stored and classified; system messages become the system prompt.
    pub messages: Vec<Message>,
    /// Stream NDJSON lines (default true).
    #[serde(default)]
    pub stream: Option<bool>,
    /// Sampling options.
    #[serde(default, deserialize_with = "object_only")]
    pub options: Option<GenerationOptions>,
    /// Accepted; the backends' own setting applies.
    #[serde(default)]
    pub keep_alive: Option<KeepAlive>,
    /// Only empty: tool calling is not supported.
    #[serde(default)]
    #[schema(value_type = Option<Vec<Object>>, max_items = 0)]
    pub tools: Option<Vec<serde_json::Value>>,
}

/// `keep_alive`: a duration (`"5m"`) or seconds.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
#[schema(as = ollama::KeepAlive)]
pub enum KeepAlive {
    /// A duration such as `5m`.
    Text(String),
    /// Seconds.
    Seconds(f64),
}

/// A message of the conversation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "role", rename_all = "lowercase", deny_unknown_fields)]
#[schema(as = ollama::Message)]
pub enum Message {
    /// Instructions.
    System {
        /// The text.
        content: String,
    },
    /// The user.
    User {
        /// The text: not blank, no NUL, at most the message limit.
        content: super::openai::UserText,
    },
    /// An earlier answer (as the last message: the start of the answer,
    /// to be continued).
    Assistant {
        /// The text.
        #[serde(default)]
        content: String,
    },
}

/// `POST /api/generate`'s body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ollama::GenerateRequest)]
pub struct GenerateRequest {
    /// A model the LLM backends serve.
    #[schema(min_length = 1)]
    pub model: String,
    /// The prompt; empty (or blank): the answer is at once, `done_reason: "load"`.
    #[serde(default)]
    #[schema(pattern = r"^[^\u0000]*$")]
    pub prompt: Option<String>,
    /// The system prompt (replaces the service's).
    #[serde(default)]
    pub system: Option<String>,
    /// Stream NDJSON lines (default true).
    #[serde(default)]
    pub stream: Option<bool>,
    /// Sampling options.
    #[serde(default, deserialize_with = "object_only")]
    pub options: Option<GenerationOptions>,
    /// Accepted; the backends' own setting applies.
    #[serde(default)]
    pub keep_alive: Option<KeepAlive>,
}

impl ChatRequest {
    fn conversation(self, max_chars: usize) -> Result<(Asked, Conversation), CompatError> {
        if self.tools.as_ref().is_some_and(|tools| !tools.is_empty()) {
            return Err(CompatError::invalid(
                "tools",
                "tools are not supported by this gateway",
            ));
        }
        let said = self.messages.into_iter().map(|message| match message {
            Message::System { content } => Said::System(content),
            Message::User { content } => Said::User(content.0),
            Message::Assistant { content } => Said::Assistant(content),
        });
        let conversation = Conversation::split(said.collect(), max_chars, "messages")?;
        let options = self.options.unwrap_or_default();
        let asked = Asked::new(
            Api::Ollama,
            self.model,
            options,
            self.stream.unwrap_or(true),
        )?;
        Ok((asked, conversation))
    }
}

/// Reads a body, in Ollama's words when it is not what the route takes.
async fn body<T: serde::de::DeserializeOwned>(
    req: &HttpRequest,
    payload: web::Payload,
    state: &State,
) -> Result<T, CompatError> {
    let body = read_limited(req, payload, state.max_body_bytes).await?;
    super::require_an_object(&body)?;
    Ok(chatbot_common::body::parse_json(&body)?)
}

/// Chat (Ollama's `POST /api/chat`).
#[utoipa::path(post, path = "/ollama/api/chat", operation_id = "ollamaChat", tag = "ollama",
    request_body = ChatRequest,
    params(super::SessionHeader),
    responses(
        (status = 200, description = "the answer: one object, or NDJSON lines of them", content(
            (ChatLine = "application/json"),
            (ChatLine = "application/x-ndjson")
        )),
        Failures
    ),
    security(("api_key" = []))
)]
pub(crate) async fn chat(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<State>,
) -> Result<HttpResponse, CompatError> {
    let request: ChatRequest = body(&req, payload, &state).await?;
    let (asked, conversation) = request.conversation(state.max_message_chars)?;
    let lines = Lines::new(&asked.model, Shape::Chat);
    answer(&req, &state, asked, conversation, lines).await
}

/// Generate (Ollama's `POST /api/generate`).
#[utoipa::path(post, path = "/ollama/api/generate", operation_id = "ollamaGenerate", tag = "ollama",
    request_body = GenerateRequest,
    params(super::SessionHeader),
    responses(
        (status = 200, description = "the answer: one object, or NDJSON lines of them", content(
            (GenerateLine = "application/json"),
            (GenerateLine = "application/x-ndjson")
        )),
        Failures
    ),
    security(("api_key" = []))
)]
pub(crate) async fn generate(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<State>,
) -> Result<HttpResponse, CompatError> {
    let request: GenerateRequest = body(&req, payload, &state).await?;
    let options = request.options.unwrap_or_default();
    let asked = Asked::new(
        Api::Ollama,
        request.model,
        options,
        request.stream.unwrap_or(true),
    )?;
    let lines = Lines::new(&asked.model, Shape::Generate);
    let prompt = request.prompt.unwrap_or_default();
    super::session_of(&req)?;
    if prompt.trim().is_empty() && prompt.chars().count() <= state.max_message_chars {
        return Ok(lines.loaded(asked.stream));
    }
    let mut said = Vec::with_capacity(2);
    said.extend(request.system.map(Said::System));
    said.push(Said::User(prompt));
    let conversation = Conversation::split(said, state.max_message_chars, "prompt")?;
    answer(&req, &state, asked, conversation, lines).await
}

async fn answer(
    req: &HttpRequest,
    state: &State,
    asked: Asked,
    conversation: Conversation,
    lines: Lines,
) -> Result<HttpResponse, CompatError> {
    let (exchange, id) = asked.exchange(req, None, "user", conversation)?;
    let (answer, pending) = forward(req, state, &exchange, id).await?;
    let reply = match answer {
        Answer::Whole(response) => Reply::Json(lines.last(&response, &response.reply)),
        Answer::Stream(events) => Reply::Stream("application/x-ndjson", lines.stream(events)),
    };
    Ok(pending.respond(state, reply))
}

/// Which route's objects to write.
#[derive(Clone, Copy)]
enum Shape {
    /// `message: {role, content}`.
    Chat,
    /// `response`.
    Generate,
}

/// Writes the objects of one answer.
struct Lines {
    model: String,
    shape: Shape,
}

impl Lines {
    fn new(model: &str, shape: Shape) -> Self {
        Self {
            model: model.to_owned(),
            shape,
        }
    }

    fn object(&self, content: &str, done: Option<Done>) -> Vec<u8> {
        let created_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        match self.shape {
            Shape::Chat => to_bytes(&ChatLine {
                model: &self.model,
                created_at,
                message: AnswerMessage {
                    role: "assistant",
                    content,
                },
                done: done.is_some(),
                done_reason: done.as_ref().map(|d| d.reason),
                metrics: done.map(|d| d.metrics).unwrap_or_default(),
            }),
            Shape::Generate => to_bytes(&GenerateLine {
                model: &self.model,
                created_at,
                response: content,
                done: done.is_some(),
                done_reason: done.as_ref().map(|d| d.reason),
                metrics: done.map(|d| d.metrics).unwrap_or_default(),
            }),
        }
    }

    /// The last object, with the reply's metrics (`content`: the whole
    /// reply, or nothing after streamed pieces).
    fn last(&self, response: &ChatResponse, content: &str) -> Vec<u8> {
        self.object(content, Some(Done::of(response)))
    }

    /// The answer to an empty prompt: the model is "loaded", nothing said.
    fn loaded(&self, stream: bool) -> HttpResponse {
        let done = Done {
            reason: "load",
            metrics: Metrics::default(),
        };
        let object = self.object("", Some(done));
        if stream {
            HttpResponse::Ok()
                .content_type("application/x-ndjson")
                .body(line(object))
        } else {
            HttpResponse::Ok()
                .content_type("application/json")
                .body(object)
        }
    }

    fn stream(
        self,
        events: futures::stream::BoxStream<'static, ChatEvent>,
    ) -> futures::stream::BoxStream<'static, Bytes> {
        events
            .map(move |event| match event {
                ChatEvent::Token(content) => line(self.object(&content, None)),
                ChatEvent::Done(response) => line(self.last(&response, "")),
                ChatEvent::Failed(error) => line(to_bytes(&Dialect::Ollama.body(&error, None))),
            })
            .boxed()
    }
}

fn line(mut object: Vec<u8>) -> Bytes {
    object.push(b'\n');
    Bytes::from(object)
}

/// How an answer ended.
struct Done {
    reason: &'static str,
    metrics: Metrics,
}

impl Done {
    fn of(response: &ChatResponse) -> Self {
        let durations = response.durations.unwrap_or_default();
        let measured = durations.load_ns + durations.prompt_eval_ns + durations.eval_ns;
        let whole = response.response_time_ms.saturating_mul(1_000_000);
        Self {
            reason: response.finish_reason.as_str(),
            metrics: Metrics {
                total_duration: Some(whole.max(measured)),
                load_duration: Some(durations.load_ns),
                prompt_eval_count: Some(response.usage.prompt_tokens),
                prompt_eval_duration: Some(durations.prompt_eval_ns),
                eval_count: Some(response.usage.completion_tokens),
                eval_duration: Some(durations.eval_ns),
            },
        }
    }
}

/// The durations (nanoseconds) and token counts of the last object (none
/// on the others).
#[derive(Debug, Clone, Copy, Default, Serialize, ToSchema)]
#[schema(as = ollama::Metrics)]
pub struct Metrics {
    /// The whole exchange.
    #[serde(skip_serializing_if = "Option::is_none")]
    total_duration: Option<u64>,
    /// Loading the model.
    #[serde(skip_serializing_if = "Option::is_none")]
    load_duration: Option<u64>,
    /// Tokens in the prompt.
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_eval_count: Option<u32>,
    /// Reading the prompt.
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_eval_duration: Option<u64>,
    /// Tokens in the reply.
    #[serde(skip_serializing_if = "Option::is_none")]
    eval_count: Option<u32>,
    /// Generating the reply.
    #[serde(skip_serializing_if = "Option::is_none")]
    eval_duration: Option<u64>,
}

/// The answer's message.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ollama::AnswerMessage)]
pub struct AnswerMessage<'a> {
    /// `assistant`.
    #[schema(value_type = String)]
    role: &'static str,
    /// The reply, or a piece of it.
    content: &'a str,
}

/// One object of a chat answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ollama::ChatLine)]
pub struct ChatLine<'a> {
    /// The model asked for.
    model: &'a str,
    /// When the object was written (RFC 3339).
    created_at: String,
    /// The reply, or a piece of it.
    message: AnswerMessage<'a>,
    /// Whether this is the last object.
    done: bool,
    /// `stop`, `length` (or `load`), on the last object.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    done_reason: Option<&'static str>,
    /// On the last object.
    #[serde(flatten)]
    metrics: Metrics,
}

/// One object of a generate answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ollama::GenerateLine)]
pub struct GenerateLine<'a> {
    /// The model asked for.
    model: &'a str,
    /// When the object was written (RFC 3339).
    created_at: String,
    /// The reply, or a piece of it.
    response: &'a str,
    /// Whether this is the last object.
    done: bool,
    /// `stop`, `length` or `load`, on the last object.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    done_reason: Option<&'static str>,
    /// On the last object.
    #[serde(flatten)]
    metrics: Metrics,
}

/// An error, as Ollama shapes it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ollama::Error)]
pub struct ErrorBody {
    /// What went wrong.
    error: String,
}

/// The failures of the Ollama-compatible routes, in its error shape.
pub struct Failures;

impl utoipa::IntoResponses for Failures {
    fn responses()
    -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::Response>> {
        super::failures("ollama.Error")
    }
}

/// `GET /api/tags`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ollama::Tags)]
pub struct Tags {
    /// As the backends list them (`name`, `model`, `modified_at`, `size`,
    /// `digest`, `details`), each once.
    #[schema(value_type = Vec<Object>)]
    models: Vec<serde_json::Value>,
}

/// `GET /api/version`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ollama::Version)]
pub struct Version {
    /// The backends' Ollama version.
    version: String,
}

/// The models the LLM backends serve (Ollama's `GET /api/tags`).
#[utoipa::path(get, path = "/ollama/api/tags", operation_id = "ollamaTags", tag = "ollama",
    responses((status = 200, description = "the models", body = Tags), Failures),
    security(("api_key" = []))
)]
pub(crate) async fn tags(state: web::Data<State>) -> Result<HttpResponse, CompatError> {
    let catalog = super::catalog(&state).await?;
    Ok(HttpResponse::Ok().json(Tags {
        models: catalog.models,
    }))
}

/// The backends' Ollama version (Ollama's `GET /api/version`).
#[utoipa::path(get, path = "/ollama/api/version", operation_id = "ollamaVersion", tag = "ollama",
    responses((status = 200, description = "the version", body = Version), Failures),
    security(("api_key" = []))
)]
pub(crate) async fn version(state: web::Data<State>) -> Result<HttpResponse, CompatError> {
    let catalog = super::catalog(&state).await?;
    let version = catalog.version.ok_or_else(|| {
        ApiError::new(
            chatbot_common::error::ErrorCode::LlmUnavailable,
            "no LLM backend has answered yet",
        )
        .retry_after(10)
    })?;
    Ok(HttpResponse::Ok().json(Version { version }))
}

/// Ollama's liveness answer, for clients that check it.
#[utoipa::path(get, path = "/ollama", operation_id = "ollamaRoot", tag = "ollama",
    responses((status = 200, description = "`Ollama is running`", body = String, content_type = "text/plain"))
)]
pub(crate) async fn root() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body("Ollama is running")
}
