//! The chat service's OpenAPI document (an internal API).

use chatbot_common::openapi::{chat_operation, chat_schemas, document as build};
use serde_json::{Value, json};

/// The document served at `/openapi.json`.
pub fn document(max_message_chars: usize) -> Value {
    build(
        "chatbot chat service",
        "One exchange: classify, call the LLM, store the exchange (internal API).",
        json!({"/chat": {"post": chat_operation()}}),
        chat_schemas(max_message_chars),
    )
}
