//! Wire types shared by the services, and the validation of client input.
//!
//! The gateway, chat and session speak these types to each other, so a field
//! is named, validated and documented in exactly one place.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::ApiError;

/// Longest accepted `user_id`, in characters.
pub const USER_ID_MAX: usize = 128;

/// A client's chat request (`POST /api/chat`).
// The OpenAPI schema's `maxLength` of `message` is set from configuration
// when a service builds its document (`crate::openapi::limit_message_length`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatRequest {
    /// Who is writing: 1 to 128 of `A-Z a-z 0-9 _ . @ : -`.
    #[schema(pattern = "^[A-Za-z0-9_.@:-]{1,128}$")]
    pub user_id: String,
    /// The message: not blank, no NUL characters.
    #[schema(min_length = 1, pattern = r"^[^\u0000]*[^\u0000\t\n\r ][^\u0000]*$")]
    pub message: String,
    /// Continue this session; omit it (or send null) to start one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<Uuid>,
    /// Answer as server-sent events, token by token.
    #[serde(default)]
    #[schema(default = false)]
    pub stream: bool,
}

impl ChatRequest {
    /// Checks every field; `max_message_chars` comes from configuration.
    pub fn validate(&self, max_message_chars: usize) -> Result<(), ApiError> {
        validate_user_id(&self.user_id)?;
        validate_message(&self.message, max_message_chars)
    }
}

/// Checks a message: not blank, at most `max_chars` characters, no NUL.
pub fn validate_message(message: &str, max_chars: usize) -> Result<(), ApiError> {
    if message
        .chars()
        .all(|c| matches!(c, ' ' | '\t' | '\n' | '\r'))
    {
        return Err(ApiError::invalid("message must not be empty"));
    }
    let chars = message.chars().count();
    if chars > max_chars {
        return Err(ApiError::invalid(format!(
            "message is {chars} characters long; the maximum is {max_chars}"
        )));
    }
    if message.contains('\0') {
        return Err(ApiError::invalid("message must not contain NUL characters"));
    }
    Ok(())
}

/// Which public API an exchange came through: a metric label and the
/// `api` column of `messages`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    /// The service's own `POST /api/chat`.
    #[default]
    Native,
    /// The OpenAI-compatible `POST /v1/chat/completions`.
    Openai,
    /// The Ollama-compatible `/ollama/api/chat` and `/ollama/api/generate`.
    Ollama,
}

impl Api {
    /// The lowercase name, as stored and as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Openai => "openai",
            Self::Ollama => "ollama",
        }
    }
}

/// What the gateway sends chat's `POST /chat`: a [`ChatRequest`]'s fields,
/// and for the OpenAI- and Ollama-compatible routes what those APIs add
/// ([`Compat`]). A plain `ChatRequest` body is one with no `compat`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExchangeRequest {
    /// As in [`ChatRequest`].
    #[schema(pattern = "^[A-Za-z0-9_.@:-]{1,128}$")]
    pub user_id: String,
    /// As in [`ChatRequest`].
    #[schema(min_length = 1)]
    pub message: String,
    /// As in [`ChatRequest`]; with `compat`, `None` makes a stateless
    /// exchange (no session is created, the row's `session_id` is NULL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<Uuid>,
    /// As in [`ChatRequest`].
    #[serde(default)]
    pub stream: bool,
    /// Set by the compatible routes only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compat: Option<Compat>,
}

impl From<ChatRequest> for ExchangeRequest {
    fn from(request: ChatRequest) -> Self {
        Self {
            user_id: request.user_id,
            message: request.message,
            session_id: request.session_id,
            stream: request.stream,
            compat: None,
        }
    }
}

impl ExchangeRequest {
    /// Checks every field; `max_message_chars` comes from configuration.
    pub fn validate(&self, max_message_chars: usize) -> Result<(), ApiError> {
        validate_user_id(&self.user_id)?;
        validate_message(&self.message, max_message_chars)
    }

    /// The API the exchange came through.
    pub fn api(&self) -> Api {
        self.compat.as_ref().map_or(Api::Native, |c| c.api)
    }
}

/// What an OpenAI- or Ollama-compatible request adds to an exchange: the
/// client sends the conversation itself, may choose the model, the system
/// prompt and the sampling options.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Compat {
    /// The API it came through (`openai` or `ollama`).
    pub api: Api,
    /// The exchange's id, chosen by the gateway (it names the answer before
    /// the reply is complete); the row in `messages` has it.
    pub id: Uuid,
    /// The model asked for; `None`: `chat.model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The client's system prompt, replacing `chat.system_prompt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// The turns before `message`, oldest first (not used with a
    /// `session_id`, whose stored history is used instead).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryTurn>,
    /// Assistant turns the client sent after `message` (the start of the
    /// answer it wants continued); they follow it in the prompt.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<HistoryTurn>,
    /// Sampling options, passed to Ollama as its `options`.
    #[serde(default)]
    pub options: GenerationOptions,
}

/// One earlier turn a client sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HistoryTurn {
    /// Who said it.
    pub role: Role,
    /// What was said.
    pub content: String,
}

impl From<Turn> for HistoryTurn {
    fn from(turn: Turn) -> Self {
        Self {
            role: turn.role,
            content: turn.content,
        }
    }
}

/// Ollama's generation options that the compatible APIs map to (see
/// Ollama's `options`); each is left to the model's default when absent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerationOptions {
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Top-k sampling.
    #[serde(
        default,
        deserialize_with = "whole_number",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(minimum = 0, maximum = 4_294_967_295_u64, format = Int64)]
    pub top_k: Option<u32>,
    /// Minimum probability relative to the likeliest token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_p: Option<f64>,
    /// Seed: the same seed and input give the same output.
    #[serde(
        default,
        deserialize_with = "whole_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub seed: Option<i64>,
    /// Most tokens to generate.
    #[serde(
        default,
        deserialize_with = "whole_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub num_predict: Option<i64>,
    /// Context window, in tokens.
    #[serde(
        default,
        deserialize_with = "whole_number",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(minimum = 0, maximum = 4_294_967_295_u64, format = Int64)]
    pub num_ctx: Option<u32>,
    /// Stop sequences.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    /// Penalty on tokens already present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    /// Penalty growing with each repetition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    /// Ollama's repeat penalty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_penalty: Option<f64>,
}

impl GenerationOptions {
    /// No option set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Deserializes an optional `T` from a JSON object only, for
/// `#[serde(deserialize_with)]`: serde's derive would also take an array,
/// field by field, which no client means.
pub fn object_only<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let object = Option::<serde_json::Map<String, serde_json::Value>>::deserialize(deserializer)?;
    object
        .map(|object| T::deserialize(serde_json::Value::Object(object)))
        .transpose()
        .map_err(serde::de::Error::custom)
}

/// Deserializes an optional integer from any JSON number without a
/// fraction (`3` or `3.0`: JSON Schema counts both as integers), for
/// `#[serde(deserialize_with)]`.
pub fn whole_number<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<i128>,
{
    use serde::de::Error;
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    let whole = number
        .as_i64()
        .map(i128::from)
        .or_else(|| number.as_u64().map(i128::from))
        .or_else(|| {
            let float = number.as_f64()?;
            // Exact for every whole float below 2^63; larger ones are out of range anyway.
            #[allow(clippy::cast_possible_truncation)]
            (float.fract() == 0.0 && float.abs() < 9.2e18).then_some(float as i128)
        })
        .ok_or_else(|| D::Error::custom(format!("expected an integer, not {number}")))?;
    T::try_from(whole)
        .map(Some)
        .map_err(|_| D::Error::custom(format!("{number} is out of range")))
}

/// Checks a user id: 1 to 128 characters of `A-Z a-z 0-9 _ . @ : -`.
pub fn validate_user_id(user_id: &str) -> Result<(), ApiError> {
    let valid_char = |c: char| c.is_ascii_alphanumeric() || "_.@:-".contains(c);
    if user_id.is_empty() || user_id.len() > USER_ID_MAX || !user_id.chars().all(valid_char) {
        return Err(ApiError::invalid(
            "user_id must be 1 to 128 characters of letters, digits and _ . @ : -",
        ));
    }
    Ok(())
}

/// Parses a session id from a path segment (422 when it is not a UUID).
pub fn parse_session_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::invalid("session id must be a UUID"))
}

/// The header in which the gateway tells chat and session which API key a
/// request was made with (its id); they keep each session to that key. The
/// gateway sets it from the authenticated key and never passes on a
/// client's own.
pub const API_KEY_HEADER: &str = "x-chatbot-api-key-id";

/// The API key id of a request from the gateway (`None`: authentication is
/// off, or the caller is not the gateway).
pub fn api_key_of(headers: &actix_web::http::header::HeaderMap) -> Result<Option<Uuid>, ApiError> {
    headers
        .get(API_KEY_HEADER)
        .map(|value| {
            value
                .to_str()
                .ok()
                .and_then(|v| Uuid::parse_str(v).ok())
                .ok_or_else(|| ApiError::invalid(format!("{API_KEY_HEADER} must be a UUID")))
        })
        .transpose()
}

/// What kind of message the user sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MessageType {
    /// Asks something.
    Question,
    /// Reports a problem or dissatisfaction.
    Complaint,
    /// Asks for something to be done.
    Request,
    /// Says hello.
    Greeting,
    /// Comments on the service.
    Feedback,
    /// None of the above.
    Other,
}

impl MessageType {
    /// Every type, in documentation order.
    pub const ALL: [MessageType; 6] = [
        Self::Question,
        Self::Complaint,
        Self::Request,
        Self::Greeting,
        Self::Feedback,
        Self::Other,
    ];

    /// The lowercase name, as stored and as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Question => "question",
            Self::Complaint => "complaint",
            Self::Request => "request",
            Self::Greeting => "greeting",
            Self::Feedback => "feedback",
            Self::Other => "other",
        }
    }

    /// Parses a lowercase name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

/// How soon a human should look at the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Urgency {
    /// Can wait.
    Low,
    /// The default.
    Normal,
    /// Escalated to n8n when configured.
    High,
}

impl Urgency {
    /// Every urgency.
    pub const ALL: [Urgency; 3] = [Self::Low, Self::Normal, Self::High];

    /// The uppercase name, as stored and as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "LOW",
            Self::Normal => "NORMAL",
            Self::High => "HIGH",
        }
    }
}

/// Token counts reported by the LLM.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Usage {
    /// Tokens in the prompt, history included.
    pub prompt_tokens: u32,
    /// Tokens in the reply.
    pub completion_tokens: u32,
}

/// Why the model stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// It finished its answer, or met a stop sequence.
    #[default]
    Stop,
    /// It reached the token limit (`num_predict`, `max_tokens`).
    Length,
}

impl FinishReason {
    /// From Ollama's `done_reason`.
    pub fn from_done_reason(reason: &str) -> Self {
        if reason == "length" {
            Self::Length
        } else {
            Self::Stop
        }
    }

    /// The lowercase name, as OpenAI and Ollama spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
        }
    }
}

/// The durations Ollama reports with its last chunk, in nanoseconds (for
/// the Ollama-compatible answers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LlmDurations {
    /// Loading the model.
    pub load_ns: u64,
    /// Reading the prompt.
    pub prompt_eval_ns: u64,
    /// Generating the reply.
    pub eval_ns: u64,
}

/// The answer to one chat exchange.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatResponse {
    /// The session the exchange belongs to (absent only for a stateless
    /// exchange of the compatible APIs, never on `/api/chat`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<Uuid>,
    /// Id of the stored exchange (the row in `messages`).
    pub message_id: Uuid,
    /// The LLM's reply.
    pub reply: String,
    /// Classified message type.
    #[serde(rename = "type")]
    pub kind: MessageType,
    /// Classified urgency.
    pub urgency: Urgency,
    /// The model that answered.
    pub model: String,
    /// Time from receiving the message to the end of the reply, in ms.
    pub response_time_ms: u64,
    /// Token counts.
    pub usage: Usage,
    /// Why the model stopped.
    #[serde(default)]
    pub finish_reason: FinishReason,
    /// Ollama's durations (for the compatible APIs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub durations: Option<LlmDurations>,
}

/// What the backends serve, as their `GET /api/tags` and `GET
/// /api/version` said at the last look: chat's `GET /models`, from which
/// the gateway answers the compatible APIs' model lists.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Catalog {
    /// A backend's Ollama version (`None`: none answered yet).
    pub version: Option<String>,
    /// Each model once, as Ollama's `/api/tags` describes it (`name`,
    /// `model`, `modified_at`, `size`, `digest`, `details`).
    #[schema(value_type = Vec<Object>)]
    pub models: Vec<serde_json::Value>,
}

impl Catalog {
    fn names(&self) -> impl Iterator<Item = &str> {
        self.models
            .iter()
            .filter_map(|model| model.get("name")?.as_str())
    }

    /// The entry of `model` (`name` alone means `name:latest`).
    pub fn find(&self, model: &str) -> Option<&serde_json::Value> {
        self.models.iter().find(|entry| {
            entry
                .get("name")
                .and_then(|name| name.as_str())
                .is_some_and(|name| name == model || name.strip_suffix(":latest") == Some(model))
        })
    }

    /// Whether it lists `model` (`name` alone means `name:latest`).
    pub fn has(&self, model: &str) -> bool {
        self.find(model).is_some()
    }

    /// Adds what `other` lists and this does not.
    pub fn merge(&mut self, other: &Catalog) {
        if self.version.is_none() {
            self.version.clone_from(&other.version);
        }
        let known: std::collections::HashSet<String> = self.names().map(str::to_owned).collect();
        let new = other.models.iter().filter(|m| {
            m.get("name")
                .and_then(|n| n.as_str())
                .is_some_and(|n| !known.contains(n))
        });
        self.models.extend(new.cloned());
    }
}

/// Who said a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The user.
    User,
    /// The LLM.
    Assistant,
}

/// One stored turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Turn {
    /// Who said it.
    pub role: Role,
    /// What was said.
    pub content: String,
    /// The exchange it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<Uuid>,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
}

/// A session with its turns, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Session)]
pub struct SessionView {
    /// The session id.
    pub session_id: Uuid,
    /// The user it belongs to.
    pub user_id: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Last activity.
    pub updated_at: DateTime<Utc>,
    /// When it expires unless used again.
    pub expires_at: DateTime<Utc>,
    /// The stored turns, oldest first (capped by `session.max_turns`).
    pub turns: Vec<Turn>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(user_id: &str, message: &str) -> ChatRequest {
        ChatRequest {
            user_id: user_id.into(),
            message: message.into(),
            session_id: None,
            stream: false,
        }
    }

    #[test]
    fn accepts_ordinary_input() {
        assert!(
            request("user_1@example.com", "Hello there")
                .validate(100)
                .is_ok()
        );
        assert!(request("u", &"é".repeat(100)).validate(100).is_ok());
    }

    #[test]
    fn rejects_bad_fields_with_the_field_named() {
        let msg = |r: ChatRequest| r.validate(10).err().map(|e| e.message).unwrap_or_default();
        assert!(msg(request("", "hi")).contains("user_id"));
        assert!(msg(request("a b", "hi")).contains("user_id"));
        assert!(msg(request(&"u".repeat(129), "hi")).contains("user_id"));
        assert!(msg(request("u", "  ")).contains("empty"));
        assert!(msg(request("u", "12345678901")).contains("maximum is 10"));
        assert!(msg(request("u", "a\0b")).contains("NUL"));
    }

    #[test]
    fn type_names_round_trip() {
        for t in MessageType::ALL {
            assert_eq!(MessageType::parse(t.as_str()), Some(t));
        }
    }
}
