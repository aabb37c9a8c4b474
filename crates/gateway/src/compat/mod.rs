//! The OpenAI- and Ollama-compatible APIs: existing clients pointed at the
//! gateway get the service's pipeline (keys, limits, classification,
//! storage, metrics, traces, escalation) without learning `/api/chat`.
//!
//! | route | speaks |
//! |---|---|
//! | `POST /v1/chat/completions`, `GET /v1/models`, `GET /v1/models/{model}` | OpenAI ([`openai`]) |
//! | `POST /ollama/api/chat`, `POST /ollama/api/generate`, `GET /ollama/api/tags`, `GET /ollama/api/version`, `GET /ollama` | Ollama ([`ollama`]) |
//!
//! Each request is translated into one
//! [`ExchangeRequest`](chatbot_common::api::ExchangeRequest) (the client's
//! conversation, model, system prompt and options in its `compat` part) and
//! sent to chat's `POST /chat`, exactly as `/api/chat` is; chat's answer (a
//! [`ChatResponse`](chatbot_common::api::ChatResponse), or its `token`/`done`/`error` events, read by
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

mod chat;
mod dialect;
mod openapi;
mod request;

pub use chat::{Answer, ChatEvent, Pending, Reply, catalog, events, forward};
pub use dialect::{CompatError, Dialect, in_dialect};
pub(crate) use openapi::failures;
pub use openapi::{SessionHeader, refine_schemas};
pub use request::{Asked, Conversation, Said, require_an_object, session_of, user_of};

/// The header naming one of our sessions whose stored history an exchange
/// uses (and extends) instead of the history the client sent.
pub const SESSION_HEADER: &str = "x-chatbot-session";

/// The header carrying the stored exchange's id (the row in `messages`).
pub const MESSAGE_ID_HEADER: &str = "x-chatbot-message-id";

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
