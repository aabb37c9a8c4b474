//! Ollama's HTTP wire format, owned in one place for the services that serve
//! it: the simulator (`ollama-sim`) and the real local model (`local-llm`).
//!
//! - [`request`]: the bodies of `/api/chat`, `/api/generate` and `/api/show`,
//!   read and refused as Ollama does (`{"error": "..."}` with its statuses).
//! - [`answer`]: the objects Ollama answers with, in its field order: the
//!   streamed chunks, the final figures, the model lists.
//! - [`names`]: model name matching (`name` means `name:latest`) and
//!   `keep_alive` parsing.

pub mod answer;
pub mod names;
pub mod request;

pub use answer::{
    AssistantMessage, ChatChunk, GenerateChunk, Metrics, ModelDetails, ModelList, PsModel,
    TagModel, encode, error, json_response, ndjson_line, now, timestamp,
};
pub use names::{DEFAULT_KEEP_ALIVE, KeepAlive, canonical, find, parse_keep_alive};
pub use request::{
    ChatRequest, Failure, GenerateRequest, GenerationBody, GenerationFields, MAX_BODY_BYTES,
    ShowRequest, WireMessage, read_json, typed, typed_generation,
};

/// The Ollama version these services report at `/api/version`.
pub const OLLAMA_VERSION: &str = "0.6.2";
