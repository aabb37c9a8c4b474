//! The OpenAI-compatible API: `POST /v1/chat/completions` (whole, or
//! streamed as `chat.completion.chunk` server-sent events ending with
//! `data: [DONE]`), `GET /v1/models` and `GET /v1/models/{model}`.
//!
//! Parameters map to Ollama's options: `max_completion_tokens` (or
//! `max_tokens`) to `num_predict`, `temperature`, `top_p`, `stop`, `seed`,
//! `presence_penalty` and `frequency_penalty` as they are; `user` names the
//! user the exchange is stored under. Anything else (`tools`, `n` above 1,
//! `logprobs`, `response_format`, images…) is refused with a 400 naming
//! the parameter, never ignored.

use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use chatbot_common::api::{Api, ChatResponse, GenerationOptions, Usage, object_only, whole_number};
use chatbot_common::body::read_limited;
use chatbot_common::error::{ApiError, ErrorCode};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    Answer, Asked, ChatEvent, CompatError, Conversation, Dialect, Reply, Said, forward, to_bytes,
    unix_now,
};
use crate::routes::State;

/// `POST /v1/chat/completions`'s body: the parameters this gateway supports.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = openai::ChatCompletionRequest)]
pub struct CompletionRequest {
    /// A model the LLM backends serve (`GET /v1/models`).
    #[schema(min_length = 1)]
    pub model: String,
    /// The conversation, oldest first. The last user message is the one
    /// stored and classified; system and developer messages become the
    /// system prompt.
    #[schema(min_items = 1)]
    pub messages: Vec<InputMessage>,
    /// Answer as server-sent `chat.completion.chunk` events.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Streaming options (without `stream` they have nothing to change).
    #[serde(default, deserialize_with = "object_only")]
    pub stream_options: Option<StreamOptions>,
    /// Most tokens to generate (deprecated by OpenAI for `max_completion_tokens`).
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(minimum = 1, maximum = 4_294_967_295_u64, format = Int64)]
    pub max_tokens: Option<u32>,
    /// Most tokens to generate.
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(minimum = 1, maximum = 4_294_967_295_u64, format = Int64)]
    pub max_completion_tokens: Option<u32>,
    /// Sampling temperature, 0 to 2.
    #[serde(default)]
    #[schema(minimum = 0.0, maximum = 2.0)]
    pub temperature: Option<f64>,
    /// Nucleus sampling, 0 to 1.
    #[serde(default)]
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub top_p: Option<f64>,
    /// Up to 4 sequences where generation stops.
    #[serde(default)]
    pub stop: Option<Stop>,
    /// Seed: the same seed and input give the same output.
    #[serde(default, deserialize_with = "whole_number")]
    pub seed: Option<i64>,
    /// The end user: the exchange is stored under this user id (1 to 128 of
    /// `A-Z a-z 0-9 _ . @ : -`); without it, the API key's name.
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9_.@:-]{1,128}$")]
    pub user: Option<String>,
    /// -2 to 2.
    #[serde(default)]
    #[schema(minimum = -2.0, maximum = 2.0)]
    pub presence_penalty: Option<f64>,
    /// -2 to 2.
    #[serde(default)]
    #[schema(minimum = -2.0, maximum = 2.0)]
    pub frequency_penalty: Option<f64>,
    /// Number of choices: only 1.
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(minimum = 1, maximum = 1)]
    pub n: Option<u32>,
}

/// `stream_options`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = openai::StreamOptions)]
pub struct StreamOptions {
    /// Send a last chunk with the token usage (and `usage: null` on the others).
    #[serde(default)]
    pub include_usage: Option<bool>,
}

/// `stop`: one sequence or up to 4.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
#[schema(as = openai::Stop)]
pub enum Stop {
    /// One sequence.
    One(String),
    /// Up to 4.
    Many(Vec<String>),
}

/// A message of the conversation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "role", rename_all = "lowercase", deny_unknown_fields)]
#[schema(as = openai::InputMessage)]
pub enum InputMessage {
    /// Instructions.
    System {
        /// The text.
        content: Content,
        /// A participant name (not used).
        #[serde(default)]
        name: Option<String>,
    },
    /// Instructions (OpenAI's newer name for system).
    Developer {
        /// The text.
        content: Content,
        /// A participant name (not used).
        #[serde(default)]
        name: Option<String>,
    },
    /// The user.
    User {
        /// The text: not blank, no NUL, at most the message limit.
        content: UserContent,
        /// A participant name (not used).
        #[serde(default)]
        name: Option<String>,
    },
    /// An earlier answer.
    Assistant {
        /// The text.
        #[serde(default)]
        content: Option<Content>,
        /// A participant name (not used).
        #[serde(default)]
        name: Option<String>,
        /// A refusal (not used).
        #[serde(default)]
        refusal: Option<String>,
    },
}

/// Text, or text parts.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
#[schema(as = openai::Content)]
pub enum Content {
    /// Text.
    Text(String),
    /// Text parts, joined by new lines.
    Parts(Vec<Part>),
}

/// A user message's text, or its text parts.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
#[schema(as = openai::UserContent)]
pub enum UserContent {
    /// Text.
    Text(UserText),
    /// Text parts, joined by new lines.
    Parts(Vec<UserPart>),
}

/// The text of a user message: not blank, no NUL.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = openai::UserText, pattern = r"^[^\u0000]*[^\u0000\t\n\r ][^\u0000]*$")]
pub struct UserText(pub String);

/// A content part: only text.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = openai::Part)]
pub struct Part {
    /// `text` (images, audio and files are not supported).
    #[serde(rename = "type")]
    #[schema(pattern = "^text$")]
    pub kind: String,
    /// The text.
    pub text: String,
}

/// A content part of a user message: only text.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = openai::UserPart)]
pub struct UserPart {
    /// `text` (images, audio and files are not supported).
    #[serde(rename = "type")]
    #[schema(pattern = "^text$")]
    pub kind: String,
    /// The text.
    pub text: UserText,
}

fn text_of(
    parts: impl IntoIterator<Item = (String, String)>,
    param: &str,
) -> Result<String, CompatError> {
    let mut texts = Vec::new();
    for (kind, text) in parts {
        if kind != "text" {
            return Err(CompatError::invalid(
                param,
                format!("content parts of type '{kind}' are not supported: only text"),
            ));
        }
        texts.push(text);
    }
    Ok(texts.join("\n"))
}

impl Content {
    fn into_text(self, param: &str) -> Result<String, CompatError> {
        match self {
            Self::Text(text) => Ok(text),
            Self::Parts(parts) => text_of(parts.into_iter().map(|p| (p.kind, p.text)), param),
        }
    }
}

impl UserContent {
    fn into_text(self, param: &str) -> Result<String, CompatError> {
        match self {
            Self::Text(UserText(text)) => Ok(text),
            Self::Parts(parts) => text_of(parts.into_iter().map(|p| (p.kind, p.text.0)), param),
        }
    }
}

/// Parameters OpenAI has and this gateway does not, and why.
const UNSUPPORTED: [(&str, &str); 14] = [
    ("tools", "tool calling is not supported"),
    ("tool_choice", "tool calling is not supported"),
    ("parallel_tool_calls", "tool calling is not supported"),
    ("functions", "function calling is not supported"),
    ("function_call", "function calling is not supported"),
    (
        "response_format",
        "structured output (response_format) is not supported",
    ),
    ("logprobs", "log probabilities are not available"),
    ("top_logprobs", "log probabilities are not available"),
    ("logit_bias", "logit_bias is not supported"),
    ("audio", "audio output is not supported"),
    ("modalities", "only text output is supported"),
    ("prediction", "predicted outputs are not supported"),
    ("web_search_options", "web search is not supported"),
    ("reasoning_effort", "reasoning_effort is not supported"),
];

/// serde's error for an unknown top-level field as OpenAI words it,
/// naming the parameter.
fn unknown_field(error: &ApiError, body: &[u8]) -> Option<CompatError> {
    let rest = error.message.split("unknown field `").nth(1)?;
    let field = rest.split('`').next()?;
    let sent: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body).ok()?;
    if !sent.contains_key(field) {
        return None;
    }
    let message = match UNSUPPORTED.iter().find(|(name, _)| *name == field) {
        Some((_, why)) => format!("Unsupported parameter: '{field}': {why} by this gateway."),
        None => format!("Unrecognized request argument supplied: {field}"),
    };
    Some(CompatError::invalid(field, message))
}

impl CompletionRequest {
    /// Reads the body: unknown and unsupported parameters are 400 naming them.
    fn parse(body: &[u8]) -> Result<Self, CompatError> {
        super::require_an_object(body)?;
        chatbot_common::body::parse_json(body).map_err(|error: ApiError| {
            unknown_field(&error, body).unwrap_or_else(|| CompatError::from(error))
        })
    }

    fn options(&mut self) -> Result<GenerationOptions, CompatError> {
        if self.n.is_some_and(|n| n != 1) {
            return Err(CompatError::invalid(
                "n",
                "only n = 1 is supported: one choice per request",
            ));
        }
        let stop = match self.stop.take() {
            None => Vec::new(),
            Some(Stop::One(stop)) => vec![stop],
            Some(Stop::Many(stops)) if stops.len() > 4 => {
                return Err(CompatError::invalid(
                    "stop",
                    "stop takes at most 4 sequences",
                ));
            }
            Some(Stop::Many(stops)) => stops,
        };
        for (param, value, min, max) in [
            ("temperature", self.temperature, 0.0, 2.0),
            ("top_p", self.top_p, 0.0, 1.0),
            ("presence_penalty", self.presence_penalty, -2.0, 2.0),
            ("frequency_penalty", self.frequency_penalty, -2.0, 2.0),
        ] {
            if value.is_some_and(|v| !(min..=max).contains(&v)) {
                return Err(CompatError::invalid(
                    param,
                    format!("{param} must be between {min} and {max}"),
                ));
            }
        }
        let most = self.max_completion_tokens.or(self.max_tokens);
        if most == Some(0) {
            return Err(CompatError::invalid(
                "max_completion_tokens",
                "max_completion_tokens must be at least 1",
            ));
        }
        Ok(GenerationOptions {
            temperature: self.temperature,
            top_p: self.top_p,
            seed: self.seed,
            num_predict: most.map(i64::from),
            stop,
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            ..GenerationOptions::default()
        })
    }

    fn conversation(self, max_chars: usize) -> Result<Conversation, CompatError> {
        let mut said = Vec::with_capacity(self.messages.len());
        for (i, message) in self.messages.into_iter().enumerate() {
            let param = format!("messages[{i}].content");
            said.push(match message {
                InputMessage::System { content, .. } | InputMessage::Developer { content, .. } => {
                    Said::System(content.into_text(&param)?)
                }
                InputMessage::User { content, .. } => Said::User(content.into_text(&param)?),
                InputMessage::Assistant { content, .. } => Said::Assistant(
                    content
                        .map(|c| c.into_text(&param))
                        .transpose()?
                        .unwrap_or_default(),
                ),
            });
        }
        Conversation::split(said, max_chars, "messages")
    }
}

/// Create a chat completion (OpenAI's chat completions API).
///
/// Not streamed: one `chat.completion`. Streamed: `chat.completion.chunk`
/// events (the role first, then the content, then one with
/// `finish_reason`; with `stream_options.include_usage`, a last one with
/// the usage), then `data: [DONE]`. A failure after the first chunk is a
/// `data: {"error": ...}` event. The `X-Chatbot-Session` header continues
/// one of the service's sessions; `x-chatbot-message-id` names the stored
/// exchange.
#[utoipa::path(post, path = "/v1/chat/completions", operation_id = "createChatCompletion",
    tag = "openai", request_body = CompletionRequest,
    params(super::SessionHeader),
    responses(
        (status = 200, description = "the completion", content(
            (ChatCompletion = "application/json"),
            (StreamEvent = "text/event-stream")
        )),
        Failures
    ),
    security(("api_key" = []))
)]
pub(crate) async fn completions(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<State>,
) -> Result<HttpResponse, CompatError> {
    let body = read_limited(&req, body, state.max_body_bytes).await?;
    let mut request = CompletionRequest::parse(&body)?;
    let options = request.options()?;
    let include_usage = request
        .stream_options
        .as_ref()
        .and_then(|o| o.include_usage)
        == Some(true);
    let stream = request.stream == Some(true);
    let model = request.model.clone();
    let asked = Asked::new(Api::Openai, model.clone(), options, stream)?;
    let user = request.user.take();
    let conversation = request.conversation(state.max_message_chars)?;
    let (exchange, id) = asked.exchange(&req, user, "user", conversation)?;
    let (answer, pending) = forward(&req, &state, &exchange, id).await?;
    let completion = Completion {
        id: format!("chatcmpl-{}", id.simple()),
        created: unix_now(),
        model,
    };
    let reply = match answer {
        Answer::Whole(response) => Reply::Json(to_bytes(&completion.whole(&response))),
        Answer::Stream(events) => Reply::Stream(
            "text/event-stream",
            completion.stream(events, include_usage),
        ),
    };
    Ok(pending.respond(&state, reply))
}

/// What every object of one completion repeats.
struct Completion {
    id: String,
    created: u64,
    model: String,
}

impl Completion {
    fn whole(&self, response: &ChatResponse) -> ChatCompletion {
        ChatCompletion {
            id: self.id.clone(),
            object: "chat.completion",
            created: self.created,
            model: self.model.clone(),
            choices: vec![Choice {
                index: 0,
                message: AssistantMessage {
                    role: "assistant",
                    content: response.reply.clone(),
                    refusal: None,
                },
                logprobs: None,
                finish_reason: response.finish_reason.as_str(),
            }],
            usage: CompletionUsage::from(response.usage),
            system_fingerprint: None,
        }
    }

    fn chunk(
        &self,
        delta: Delta,
        finish: Option<&'static str>,
        usage: Option<Option<CompletionUsage>>,
    ) -> ChatCompletionChunk {
        ChatCompletionChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk",
            created: self.created,
            model: self.model.clone(),
            system_fingerprint: None,
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                logprobs: None,
                finish_reason: finish,
            }],
            usage,
        }
    }

    /// The events of a streamed completion (see [`completions`]).
    fn stream(
        self,
        events: futures::stream::BoxStream<'static, ChatEvent>,
        include_usage: bool,
    ) -> futures::stream::BoxStream<'static, Bytes> {
        let usage_field = include_usage.then_some(None);
        let role = Delta {
            role: Some("assistant"),
            content: Some(String::new()),
        };
        let first = sse(&self.chunk(role, None, usage_field));
        let rest = events.flat_map(move |event| {
            let lines = match event {
                ChatEvent::Token(content) => {
                    let delta = Delta {
                        role: None,
                        content: Some(content),
                    };
                    vec![sse(&self.chunk(delta, None, usage_field))]
                }
                ChatEvent::Done(response) => {
                    let finish = Some(response.finish_reason.as_str());
                    let mut lines = vec![sse(&self.chunk(Delta::default(), finish, usage_field))];
                    if include_usage {
                        let mut last = self.chunk(
                            Delta::default(),
                            None,
                            Some(Some(CompletionUsage::from(response.usage))),
                        );
                        last.choices.clear();
                        lines.push(sse(&last));
                    }
                    lines.push(Bytes::from_static(b"data: [DONE]\n\n"));
                    lines
                }
                ChatEvent::Failed(error) => vec![sse(&Dialect::OpenAi.body(&error, None))],
            };
            futures::stream::iter(lines)
        });
        futures::stream::once(async move { first })
            .chain(rest)
            .boxed()
    }
}

fn sse<T: Serialize>(value: &T) -> Bytes {
    let mut line = b"data: ".to_vec();
    line.extend_from_slice(&to_bytes(value));
    line.extend_from_slice(b"\n\n");
    Bytes::from(line)
}

/// A whole completion.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = openai::ChatCompletion)]
pub struct ChatCompletion {
    /// `chatcmpl-` and the stored exchange's id.
    id: String,
    /// `chat.completion`.
    #[schema(value_type = String, pattern = "^chat\\.completion$")]
    object: &'static str,
    /// Unix seconds.
    created: u64,
    /// The model that answered.
    model: String,
    /// The one choice.
    choices: Vec<Choice>,
    /// Token counts.
    usage: CompletionUsage,
    /// Always null.
    #[schema(value_type = Option<String>)]
    system_fingerprint: Option<String>,
}

/// The one choice of a completion.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = openai::Choice)]
pub struct Choice {
    /// 0.
    index: u32,
    /// The answer.
    message: AssistantMessage,
    /// Always null.
    #[schema(value_type = Option<Object>)]
    logprobs: Option<serde_json::Value>,
    /// `stop` or `length`.
    #[schema(value_type = String, pattern = "^(stop|length)$")]
    finish_reason: &'static str,
}

/// The answer's message.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = openai::AssistantMessage)]
pub struct AssistantMessage {
    /// `assistant`.
    #[schema(value_type = String)]
    role: &'static str,
    /// The reply.
    content: String,
    /// Always null.
    #[schema(value_type = Option<String>)]
    refusal: Option<String>,
}

/// Token counts.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[schema(as = openai::Usage)]
pub struct CompletionUsage {
    /// Tokens in the prompt.
    prompt_tokens: u32,
    /// Tokens in the reply.
    completion_tokens: u32,
    /// Both.
    total_tokens: u32,
}

impl From<Usage> for CompletionUsage {
    fn from(usage: Usage) -> Self {
        Self {
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            total_tokens: usage.prompt_tokens.saturating_add(usage.completion_tokens),
        }
    }
}

/// One server-sent event of a streamed completion, as a client reads it:
/// `data` is a [`ChatCompletionChunk`] as JSON, `[DONE]` last, or an
/// `openai.Error` after a failure mid-stream.
#[derive(Debug, ToSchema)]
#[schema(as = openai::StreamEvent)]
#[allow(dead_code)]
pub struct StreamEvent {
    /// The event's data.
    data: String,
}

/// The `data` of one event of a streamed completion.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = openai::ChatCompletionChunk)]
pub struct ChatCompletionChunk {
    /// As the completion's.
    id: String,
    /// `chat.completion.chunk`.
    #[schema(value_type = String)]
    object: &'static str,
    /// Unix seconds.
    created: u64,
    /// The model that answers.
    model: String,
    /// Always null.
    #[schema(value_type = Option<String>)]
    system_fingerprint: Option<String>,
    /// The one choice's delta (none in the usage chunk).
    choices: Vec<ChunkChoice>,
    /// With `include_usage`: null, and the counts in the last chunk.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<CompletionUsage>)]
    usage: Option<Option<CompletionUsage>>,
}

/// A choice's part of a chunk.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = openai::ChunkChoice)]
pub struct ChunkChoice {
    /// 0.
    index: u32,
    /// What is new.
    delta: Delta,
    /// Always null.
    #[schema(value_type = Option<Object>)]
    logprobs: Option<serde_json::Value>,
    /// Null until the last content chunk.
    #[schema(value_type = Option<String>)]
    finish_reason: Option<&'static str>,
}

/// What a chunk adds.
#[derive(Debug, Default, Serialize, ToSchema)]
#[schema(as = openai::Delta)]
pub struct Delta {
    /// `assistant`, in the first chunk.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    role: Option<&'static str>,
    /// More of the reply.
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<String>,
}

/// An error, as OpenAI shapes it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = openai::Error)]
pub struct ErrorBody {
    /// The error.
    error: ErrorDetail,
}

/// The error's fields.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = openai::ErrorDetail)]
pub struct ErrorDetail {
    /// What went wrong.
    message: String,
    /// `invalid_request_error`, `requests` (rate limits) or `server_error`.
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    kind: &'static str,
    /// The parameter at fault.
    param: Option<String>,
    /// The service's stable code (`invalid_api_key` for a bad key,
    /// `rate_limit_exceeded` over a limit).
    #[schema(value_type = Option<String>)]
    code: Option<&'static str>,
}

/// The body of `error` in OpenAI's shape.
pub fn error_body(error: &ApiError, param: Option<&str>) -> serde_json::Value {
    let (kind, code) = match error.code {
        ErrorCode::Unauthorized => ("invalid_request_error", "invalid_api_key"),
        ErrorCode::RateLimited => ("requests", "rate_limit_exceeded"),
        code if code.status().is_server_error() => ("server_error", code.as_str()),
        code => ("invalid_request_error", code.as_str()),
    };
    let param = param.or((error.code == ErrorCode::ModelNotFound).then_some("model"));
    serde_json::to_value(ErrorBody {
        error: ErrorDetail {
            message: error.message.clone(),
            kind,
            param: param.map(str::to_owned),
            code: Some(code),
        },
    })
    .unwrap_or_default()
}

/// The failures of the OpenAI-compatible routes, in its error shape.
pub struct Failures;

impl utoipa::IntoResponses for Failures {
    fn responses()
    -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::Response>> {
        super::failures("openai.Error")
    }
}

/// `GET /v1/models`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = openai::ModelList)]
pub struct ModelList {
    /// `list`.
    #[schema(value_type = String)]
    object: &'static str,
    /// The models.
    data: Vec<Model>,
}

/// A model the LLM backends serve.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = openai::Model)]
pub struct Model {
    /// Its name, as `model` takes it.
    id: String,
    /// `model`.
    #[schema(value_type = String)]
    object: &'static str,
    /// When it was last modified on the backend, in Unix seconds.
    created: i64,
    /// `ollama`.
    #[schema(value_type = String)]
    owned_by: &'static str,
}

impl Model {
    fn from_tag(tag: &serde_json::Value) -> Option<Self> {
        let created = tag
            .get("modified_at")
            .and_then(|t| t.as_str())
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map_or(0, |t| t.timestamp());
        Some(Self {
            id: tag.get("name")?.as_str()?.to_owned(),
            object: "model",
            created,
            owned_by: "ollama",
        })
    }
}

/// The models the LLM backends serve.
#[utoipa::path(get, path = "/v1/models", operation_id = "listModels", tag = "openai",
    responses((status = 200, description = "the models", body = ModelList), Failures),
    security(("api_key" = []))
)]
pub(crate) async fn models(state: web::Data<State>) -> Result<HttpResponse, CompatError> {
    let catalog = super::catalog(&state).await?;
    let data = catalog.models.iter().filter_map(Model::from_tag).collect();
    Ok(HttpResponse::Ok().json(ModelList {
        object: "list",
        data,
    }))
}

/// One model the LLM backends serve.
#[utoipa::path(get, path = "/v1/models/{model}", operation_id = "retrieveModel", tag = "openai",
    params(("model" = String, Path, description = "the model's name")),
    responses((status = 200, description = "the model", body = Model), Failures),
    security(("api_key" = []))
)]
pub(crate) async fn model(
    state: web::Data<State>,
    name: web::Path<String>,
) -> Result<HttpResponse, CompatError> {
    let catalog = super::catalog(&state).await?;
    match catalog.find(&name).and_then(Model::from_tag) {
        Some(model) => Ok(HttpResponse::Ok().json(model)),
        None => Err(ApiError::new(
            ErrorCode::ModelNotFound,
            format!("The model '{name}' does not exist"),
        )
        .into()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parsed(body: serde_json::Value) -> Result<(GenerationOptions, Conversation), CompatError> {
        let mut request = CompletionRequest::parse(body.to_string().as_bytes())?;
        let options = request.options()?;
        Ok((options, request.conversation(100)?))
    }

    fn refused(body: serde_json::Value) -> (Option<String>, String) {
        let error = parsed(body).unwrap_err();
        (error.param, error.error.message)
    }

    #[test]
    fn parameters_map_to_ollama_options() {
        let (options, conversation) = parsed(serde_json::json!({
            "model": "m", "max_tokens": 9, "max_completion_tokens": 5, "temperature": 0.5,
            "top_p": 0.9, "stop": "END", "seed": 3, "presence_penalty": 1, "n": 1,
            "messages": [{"role": "developer", "content": "Rules"},
                         {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]
        }))
        .unwrap();
        assert_eq!(options.num_predict, Some(5), "max_completion_tokens wins");
        assert_eq!(options.stop, ["END"]);
        assert_eq!(
            (options.temperature, options.top_p, options.seed),
            (Some(0.5), Some(0.9), Some(3))
        );
        assert_eq!(options.presence_penalty, Some(1.0));
        assert_eq!(conversation.system.as_deref(), Some("Rules"));
        assert_eq!(conversation.message, "a\nb");
    }

    #[test]
    fn unsupported_and_unknown_parameters_are_named() {
        let user = serde_json::json!([{"role": "user", "content": "hi"}]);
        let (param, message) =
            refused(serde_json::json!({"model": "m", "messages": user, "tools": []}));
        assert_eq!(param.as_deref(), Some("tools"));
        assert!(
            message.contains("tool calling is not supported"),
            "{message}"
        );
        let (param, message) =
            refused(serde_json::json!({"model": "m", "messages": user, "colour": 1}));
        assert_eq!(param.as_deref(), Some("colour"));
        assert_eq!(message, "Unrecognized request argument supplied: colour");
        let (param, _) = refused(serde_json::json!({"model": "m", "messages": user, "n": 2}));
        assert_eq!(param.as_deref(), Some("n"));
        let (param, _) = refused(
            serde_json::json!({"model": "m", "messages": user, "stop": ["a", "b", "c", "d", "e"]}),
        );
        assert_eq!(param.as_deref(), Some("stop"));
        let (param, _) =
            refused(serde_json::json!({"model": "m", "messages": user, "temperature": 2.5}));
        assert_eq!(param.as_deref(), Some("temperature"));
        let image =
            serde_json::json!([{"role": "user", "content": [{"type": "image_url", "text": "x"}]}]);
        let (param, message) = refused(serde_json::json!({"model": "m", "messages": image}));
        assert_eq!(param.as_deref(), Some("messages[0].content"));
        assert!(message.contains("only text"), "{message}");
        let (param, _) = refused(
            serde_json::json!({"model": "m", "messages": [{"role": "assistant", "content": "hi"}]}),
        );
        assert_eq!(param.as_deref(), Some("messages"));
    }

    #[test]
    fn a_stream_is_role_content_finish_usage_then_done() {
        let completion = Completion {
            id: "chatcmpl-1".into(),
            created: 1,
            model: "m".into(),
        };
        let response: ChatResponse = serde_json::from_value(serde_json::json!({
            "message_id": "6f1c0a52-4b8e-4d1e-9a8e-0e6a4f0b9c11", "reply": "Hi", "type": "greeting",
            "urgency": "LOW", "model": "m", "response_time_ms": 1,
            "usage": {"prompt_tokens": 4, "completion_tokens": 1}, "finish_reason": "length"
        }))
        .unwrap();
        let events = futures::stream::iter(vec![
            ChatEvent::Token("Hi".into()),
            ChatEvent::Done(Box::new(response)),
        ]);
        let body: Vec<Bytes> =
            futures::executor::block_on(completion.stream(events.boxed(), true).collect());
        let text: Vec<String> = body
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect();
        let data: Vec<serde_json::Value> = text[..4]
            .iter()
            .map(|e| serde_json::from_str(e.strip_prefix("data: ").unwrap().trim()).unwrap())
            .collect();
        assert_eq!(
            data[0]["choices"][0]["delta"],
            serde_json::json!({"role": "assistant", "content": ""})
        );
        assert_eq!(data[0]["usage"], serde_json::Value::Null);
        assert_eq!(data[1]["choices"][0]["delta"]["content"], "Hi");
        assert_eq!(data[2]["choices"][0]["finish_reason"], "length");
        assert_eq!(data[3]["choices"], serde_json::json!([]));
        assert_eq!(data[3]["usage"]["total_tokens"], 5);
        assert_eq!(text[4], "data: [DONE]\n\n");
        assert_eq!(text.len(), 5);
    }
}
