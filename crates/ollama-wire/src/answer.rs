//! What Ollama answers with, field for field and in its order: the streamed
//! chunks of `/api/chat` and `/api/generate`, the figures of the last one,
//! the model lists, and errors.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::json;

/// The figures of a finished generation (nanoseconds and token counts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Metrics {
    /// From the request's arrival to the last token.
    pub total_duration: u64,
    /// Loading the model.
    pub load_duration: u64,
    /// Tokens of the prompt.
    pub prompt_eval_count: u64,
    /// Reading the prompt.
    pub prompt_eval_duration: u64,
    /// Tokens generated.
    pub eval_count: u64,
    /// Generating them.
    pub eval_duration: u64,
}

/// The `message` of a chat chunk.
#[derive(Debug, Serialize)]
pub struct AssistantMessage<'a> {
    /// Always `assistant`.
    pub role: &'static str,
    /// This chunk's text.
    pub content: &'a str,
}

impl<'a> AssistantMessage<'a> {
    /// The assistant saying `content`.
    pub fn new(content: &'a str) -> Self {
        Self {
            role: "assistant",
            content,
        }
    }
}

/// One object of `/api/chat`'s answer.
#[derive(Debug, Serialize)]
pub struct ChatChunk<'a> {
    /// The model as the request spelled it.
    pub model: &'a str,
    /// RFC 3339 with nanoseconds ([`now`]).
    pub created_at: String,
    /// The text.
    pub message: AssistantMessage<'a>,
    /// On the last object: `stop`, `length`, `load` or `unload`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub done_reason: Option<&'a str>,
    /// Whether this is the last object.
    pub done: bool,
    /// On the last object of a generation.
    #[serde(flatten)]
    pub metrics: Option<Metrics>,
}

/// One object of `/api/generate`'s answer.
#[derive(Debug, Serialize)]
pub struct GenerateChunk<'a> {
    /// The model as the request spelled it.
    pub model: &'a str,
    /// RFC 3339 with nanoseconds ([`now`]).
    pub created_at: String,
    /// The text.
    pub response: &'a str,
    /// Whether this is the last object.
    pub done: bool,
    /// On the last object: `stop`, `length`, `load` or `unload`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub done_reason: Option<&'a str>,
    /// On the last object: the token ids of the prompt and the answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<&'a [u64]>,
    /// On the last object of a generation.
    #[serde(flatten)]
    pub metrics: Option<Metrics>,
}

/// `details` of a model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelDetails {
    /// Empty unless the model derives from another.
    pub parent_model: String,
    /// `gguf`.
    pub format: String,
    /// `llama`, `qwen2`, ...
    pub family: String,
    /// The families, `[family]`.
    pub families: Vec<String>,
    /// `1.2B`, `494.03M`, ...
    pub parameter_size: String,
    /// `Q8_0`, `Q4_K_M`, ...
    pub quantization_level: String,
}

impl ModelDetails {
    /// The details of a GGUF model of one family.
    pub fn gguf(family: &str, parameter_size: &str, quantization: &str) -> Self {
        Self {
            parent_model: String::new(),
            format: "gguf".into(),
            family: family.into(),
            families: vec![family.into()],
            parameter_size: parameter_size.into(),
            quantization_level: quantization.into(),
        }
    }
}

/// `{"models": [...]}`.
#[derive(Debug, Serialize)]
pub struct ModelList<T> {
    /// The models.
    pub models: Vec<T>,
}

/// One model of `/api/tags`.
#[derive(Debug, Serialize)]
pub struct TagModel {
    /// `name:tag`.
    pub name: String,
    /// The same.
    pub model: String,
    /// RFC 3339.
    pub modified_at: String,
    /// Bytes on disk.
    pub size: u64,
    /// sha256, 64 hex digits.
    pub digest: String,
    /// Details.
    pub details: ModelDetails,
}

/// One model of `/api/ps`.
#[derive(Debug, Serialize)]
pub struct PsModel {
    /// `name:tag`.
    pub name: String,
    /// The same.
    pub model: String,
    /// Bytes in memory.
    pub size: u64,
    /// sha256, 64 hex digits.
    pub digest: String,
    /// Details.
    pub details: ModelDetails,
    /// When it unloads, RFC 3339.
    pub expires_at: String,
    /// Bytes in GPU memory.
    pub size_vram: u64,
    /// The context length it runs with.
    pub context_length: u64,
}

/// `at` as Ollama writes times: RFC 3339, UTC, nanoseconds.
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// The current time as [`timestamp`] writes it.
pub fn now() -> String {
    timestamp(Utc::now())
}

/// An Ollama-style error: `{"error": "..."}` with `status`.
pub fn error(status: StatusCode, message: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status).json(json!({"error": message.into()}))
}

/// `value` as JSON bytes, keeping the struct's field order (Ollama's).
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|e| {
        json!({"error": format!("could not encode the answer: {e}")})
            .to_string()
            .into_bytes()
    })
}

/// One NDJSON line: `object` and a newline.
pub fn ndjson_line(mut object: Vec<u8>) -> Bytes {
    object.push(b'\n');
    Bytes::from(object)
}

/// A 200 `application/json` answer made of `body`.
pub fn json_response(body: Vec<u8>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json; charset=utf-8")
        .body(body)
}
