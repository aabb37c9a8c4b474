//! The request bodies of Ollama's generation and model routes, and how a
//! body that cannot be read is refused (as Ollama does: `{"error": "..."}`,
//! 400 for what the client got wrong).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use futures::StreamExt;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::answer::error;
use crate::names::{KeepAlive, parse_keep_alive};

/// Largest accepted request body, in bytes.
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// The roles Ollama accepts in `messages`.
pub const VALID_ROLES: [&str; 4] = ["system", "user", "assistant", "tool"];

/// One message of `/api/chat`.
#[derive(Debug, Clone, Deserialize)]
pub struct WireMessage {
    /// `system`, `user`, `assistant` or `tool` (see [`WireMessage::check_role`]).
    #[serde(default)]
    pub role: String,
    /// The text; absent means empty.
    #[serde(default)]
    pub content: Option<String>,
}

impl WireMessage {
    /// Ollama's 400 for a role it does not know.
    pub fn check_role(&self) -> Result<(), Failure> {
        if VALID_ROLES.contains(&self.role.as_str()) {
            Ok(())
        } else {
            Err(Failure::bad_request(format!(
                "invalid role {:?}: must be one of system, user, assistant, tool",
                self.role
            )))
        }
    }
}

/// What `/api/chat` and `/api/generate` both take.
#[derive(Debug, Default, Deserialize)]
pub struct GenerationFields {
    /// The model name as the client spelled it.
    #[serde(default)]
    pub model: String,
    /// Streamed (the default) or one object ([`GenerationFields::streamed`]).
    #[serde(default)]
    pub stream: Option<bool>,
    /// Generation options (`temperature`, `num_predict`, ...).
    #[serde(default)]
    pub options: Option<Value>,
    /// `"json"` or a JSON schema ([`GenerationFields::wants_format`]).
    #[serde(default)]
    pub format: Option<Value>,
    /// How long the model stays loaded ([`GenerationFields::keep_alive`]).
    #[serde(default)]
    pub keep_alive: Option<Value>,
}

impl GenerationFields {
    /// Whether the answer is streamed: unless `stream` is `false`.
    pub fn streamed(&self) -> bool {
        self.stream.unwrap_or(true)
    }

    /// Whether a `format` (structured output) is asked for.
    pub fn wants_format(&self) -> bool {
        match &self.format {
            None | Some(Value::Null) => false,
            Some(Value::String(s)) => !s.is_empty(),
            Some(_) => true,
        }
    }

    /// `keep_alive` read as Ollama reads it, or its 400.
    pub fn keep_alive(&self) -> Result<KeepAlive, Failure> {
        parse_keep_alive(self.keep_alive.as_ref()).map_err(Failure::bad_request)
    }
}

/// The body of `POST /api/chat`.
#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    /// Model, stream, options, format, keep_alive ([`typed_generation`]).
    #[serde(skip)]
    pub fields: GenerationFields,
    /// The conversation; empty or absent loads (or unloads) the model.
    #[serde(default)]
    pub messages: Option<Vec<WireMessage>>,
    /// Tool definitions.
    #[serde(default)]
    pub tools: Option<Value>,
}

/// The body of `POST /api/generate`.
#[derive(Debug, Deserialize)]
pub struct GenerateRequest {
    /// Model, stream, options, format, keep_alive ([`typed_generation`]).
    #[serde(skip)]
    pub fields: GenerationFields,
    /// The prompt; empty or absent loads (or unloads) the model.
    #[serde(default)]
    pub prompt: Option<String>,
    /// A system prompt.
    #[serde(default)]
    pub system: Option<String>,
    /// The prompt as is, without the chat template.
    #[serde(default)]
    pub raw: Option<bool>,
}

/// A generation body: its route's own fields and the shared
/// [`GenerationFields`].
pub trait GenerationBody: DeserializeOwned {
    /// Where the shared fields go.
    fn fields_mut(&mut self) -> &mut GenerationFields;
}

impl GenerationBody for ChatRequest {
    fn fields_mut(&mut self) -> &mut GenerationFields {
        &mut self.fields
    }
}

impl GenerationBody for GenerateRequest {
    fn fields_mut(&mut self) -> &mut GenerationFields {
        &mut self.fields
    }
}

/// `value` as a generation body, or a 400 with the parser's message. The
/// shared fields and the route's own are read in two passes over the
/// parsed JSON: `#[serde(flatten)]` would buffer a copy of every field (the
/// whole conversation) first, which the simulator's benchmark role cannot
/// afford.
pub fn typed_generation<T: GenerationBody>(value: Value) -> Result<T, Failure> {
    let bad = |e: serde_json::Error| Failure::bad_request(e.to_string());
    let fields = GenerationFields::deserialize(&value).map_err(bad)?;
    let mut body = T::deserialize(&value).map_err(bad)?;
    *body.fields_mut() = fields;
    Ok(body)
}

/// The body of `POST /api/show`.
#[derive(Debug, Deserialize)]
pub struct ShowRequest {
    /// The model.
    #[serde(default)]
    pub model: String,
    /// The model, as older clients name the field.
    #[serde(default)]
    pub name: String,
}

impl ShowRequest {
    /// The model asked for, whichever field names it.
    pub fn requested(&self) -> &str {
        if self.model.is_empty() {
            &self.name
        } else {
            &self.model
        }
    }
}

/// A refused request, answered by [`Failure::response`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The status.
    pub status: StatusCode,
    /// The text of `{"error": ...}`.
    pub message: String,
}

impl Failure {
    /// A failure with `status`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// A 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// Ollama's 404 for a model it does not have.
    pub fn model_not_found(requested: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            format!("model '{requested}' not found"),
        )
    }

    /// The answer: `{"error": message}` with the status.
    pub fn response(self) -> HttpResponse {
        error(self.status, self.message)
    }
}

/// Reads the body and parses it as JSON, refusing as Ollama does.
pub async fn read_json(mut payload: web::Payload) -> Result<Value, Failure> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| Failure::bad_request(e.to_string()))?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(Failure::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body is larger than {MAX_BODY_BYTES} bytes"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Failure::bad_request("missing request body"));
    }
    serde_json::from_slice(&body).map_err(|e| Failure::bad_request(e.to_string()))
}

/// `value` as `T`, or a 400 with the parser's message.
pub fn typed<T: DeserializeOwned>(value: Value) -> Result<T, Failure> {
    serde_json::from_value(value).map_err(|e| Failure::bad_request(e.to_string()))
}
