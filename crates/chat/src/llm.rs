//! One Ollama backend: `POST /api/chat`, always streamed
//! ([`crate::backends`] spreads calls over several).
//!
//! Streaming toward Ollama even when the client wants one JSON answer lets us
//! enforce three timeouts: connect (on the shared client), first token, and
//! the whole call. Each NDJSON line is a chunk; the last has `done: true`
//! with token counts and nanosecond durations; an `{"error": ...}` line ends
//! the stream with an error.

use std::time::Duration;

use chatbot_common::api::GenerationOptions;
use chatbot_common::config::LlmTimeouts;
use chatbot_common::error::{ApiError, ErrorCode};
use chatbot_common::upstream::{LineBuffer, Upstream};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::time::{Instant, timeout_at};

/// One message sent to the model.
#[derive(Debug, Clone, Serialize)]
pub struct LlmMessage {
    /// `system`, `user` or `assistant`.
    pub role: &'static str,
    /// The text.
    pub content: String,
}

/// What a finished call reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LlmOutcome {
    /// The whole reply.
    pub reply: String,
    /// Prompt tokens (`prompt_eval_count`).
    pub prompt_tokens: u32,
    /// Reply tokens (`eval_count`).
    pub completion_tokens: u32,
    /// Time from the request to the first token.
    pub time_to_first_token: Duration,
    /// Model load time reported by Ollama (`load_duration`).
    pub load_duration: Duration,
    /// Prompt reading time reported by Ollama (`prompt_eval_duration`).
    pub prompt_eval_duration: Duration,
    /// Generation time reported by Ollama (`eval_duration`).
    pub eval_duration: Duration,
    /// Why generation stopped (`done_reason`).
    pub done_reason: String,
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// Ollama could not be reached.
    #[error("the LLM is unreachable")]
    Unreachable(#[source] reqwest::Error),
    /// No first token within the first-token timeout.
    #[error("the LLM sent no token within {0:?}")]
    FirstTokenTimeout(Duration),
    /// The whole call took longer than the total timeout.
    #[error("the LLM did not finish within {0:?}")]
    TotalTimeout(Duration),
    /// Ollama answered with an error status.
    #[error("the LLM answered {status}: {message}")]
    Status {
        /// HTTP status.
        status: u16,
        /// Ollama's `error` text.
        message: String,
    },
    /// Ollama reported an error in the middle of the stream.
    #[error("the LLM failed mid-reply: {0}")]
    MidStream(String),
    /// The stream broke or ended without its final object.
    #[error("the LLM's reply was cut off")]
    Truncated(#[source] Option<reqwest::Error>),
    /// A line could not be parsed.
    #[error("the LLM sent an unreadable line")]
    Protocol(#[source] serde_json::Error),
    /// No backend may serve now (all failing, or none has the model).
    #[error("no LLM backend can serve '{model}' now")]
    NoBackend {
        /// The model asked for.
        model: String,
        /// Until a backend's breaker lets a probe through.
        retry_after: Duration,
    },
}

impl LlmError {
    /// The client-facing error: 503 unreachable or overloaded, 504 too slow,
    /// 502 any other failure of the LLM.
    pub fn to_api(&self) -> ApiError {
        let code = match self {
            Self::NoBackend { retry_after, .. } => {
                return ApiError::new(ErrorCode::LlmUnavailable, self.to_string())
                    .retry_after(retry_after.as_secs_f64().ceil() as u64);
            }
            Self::Unreachable(_) => ErrorCode::LlmUnavailable,
            Self::Status { status: 503, .. } => ErrorCode::LlmUnavailable,
            Self::FirstTokenTimeout(_) | Self::TotalTimeout(_) => ErrorCode::LlmTimeout,
            _ => ErrorCode::LlmError,
        };
        ApiError::new(code, self.to_string())
    }

    /// Whether this says the backend is failing (its breaker counts it),
    /// rather than the request or the model.
    pub fn is_backend_failure(&self) -> bool {
        match self {
            Self::Status { status, .. } => *status >= 500,
            Self::NoBackend { .. } => false,
            _ => true,
        }
    }

    /// Whether the request never reached the backend, so another may take
    /// it.
    pub fn may_retry_elsewhere(&self) -> bool {
        matches!(self, Self::Unreachable(e) if e.is_connect())
    }
}

#[derive(Debug, Deserialize)]
struct Chunk {
    #[serde(default)]
    message: Option<ChunkMessage>,
    #[serde(default)]
    done: bool,
    #[serde(default)]
    done_reason: Option<String>,
    #[serde(default)]
    prompt_eval_count: Option<u32>,
    #[serde(default)]
    eval_count: Option<u32>,
    #[serde(default)]
    load_duration: Option<u64>,
    #[serde(default)]
    prompt_eval_duration: Option<u64>,
    #[serde(default)]
    eval_duration: Option<u64>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ChunkMessage {
    #[serde(default)]
    content: String,
}

#[derive(Serialize)]
struct ChatBody<'a> {
    model: &'a str,
    messages: &'a [LlmMessage],
    stream: bool,
    #[serde(skip_serializing_if = "GenerationOptions::is_empty")]
    options: &'a GenerationOptions,
}

/// One call: the model, the conversation and the sampling options.
#[derive(Debug, Clone, Copy)]
pub struct Prompt<'a> {
    /// The model asked for.
    pub model: &'a str,
    /// The conversation, system prompt first.
    pub messages: &'a [LlmMessage],
    /// Ollama's `options` (none: the model's defaults).
    pub options: &'a GenerationOptions,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
}

/// Calls one Ollama backend.
#[derive(Debug, Clone)]
pub struct LlmClient {
    upstream: Upstream,
    timeouts: LlmTimeouts,
}

impl LlmClient {
    /// A client for the backend behind `upstream` (whose reqwest client
    /// carries the connect timeout).
    pub fn new(upstream: Upstream, timeouts: LlmTimeouts) -> Self {
        Self { upstream, timeouts }
    }

    /// Runs one chat call, handing each token to `on_token` as it arrives;
    /// the first-token and total timeouts count from `started` (the first
    /// try, when an earlier backend could not be reached).
    pub async fn call(
        &self,
        prompt: Prompt<'_>,
        mut on_token: impl FnMut(&str),
        started: Instant,
    ) -> Result<LlmOutcome, LlmError> {
        let deadline = started + self.timeouts.total();
        let first_deadline = (started + self.timeouts.first_token()).min(deadline);
        let timed_out = |at: Instant| {
            if at == deadline {
                LlmError::TotalTimeout(self.timeouts.total())
            } else {
                LlmError::FirstTokenTimeout(self.timeouts.first_token())
            }
        };
        let request = self
            .upstream
            .post("/api/chat")
            .json(&ChatBody {
                model: prompt.model,
                messages: prompt.messages,
                stream: true,
                options: prompt.options,
            })
            .send();
        let response = timeout_at(first_deadline, request)
            .await
            .map_err(|_| timed_out(first_deadline))?
            .map_err(LlmError::Unreachable)?;
        let status = response.status();
        if !status.is_success() {
            let message = match timeout_at(first_deadline, response.json::<ErrorBody>()).await {
                Ok(Ok(body)) => body.error,
                _ => status.canonical_reason().unwrap_or("error").to_owned(),
            };
            return Err(LlmError::Status {
                status: status.as_u16(),
                message,
            });
        }
        let mut outcome = LlmOutcome::default();
        let mut first_token_at = None;
        let mut lines = LineBuffer::default();
        let mut body = response.bytes_stream();
        loop {
            let limit = if first_token_at.is_some() {
                deadline
            } else {
                first_deadline
            };
            let chunk = match timeout_at(limit, body.next()).await {
                Err(_) => return Err(timed_out(limit)),
                Ok(None) => return Err(LlmError::Truncated(None)),
                Ok(Some(Err(e))) => return Err(LlmError::Truncated(Some(e))),
                Ok(Some(Ok(bytes))) => bytes,
            };
            for line in lines.push(&chunk) {
                let chunk: Chunk = serde_json::from_slice(&line).map_err(LlmError::Protocol)?;
                if let Some(error) = chunk.error {
                    return Err(LlmError::MidStream(error));
                }
                if let Some(message) = chunk.message.filter(|m| !m.content.is_empty()) {
                    first_token_at.get_or_insert_with(Instant::now);
                    on_token(&message.content);
                    outcome.reply.push_str(&message.content);
                }
                if chunk.done {
                    outcome.prompt_tokens = chunk.prompt_eval_count.unwrap_or(0);
                    outcome.completion_tokens = chunk.eval_count.unwrap_or(0);
                    let nanos = |n: Option<u64>| Duration::from_nanos(n.unwrap_or(0));
                    outcome.load_duration = nanos(chunk.load_duration);
                    outcome.prompt_eval_duration = nanos(chunk.prompt_eval_duration);
                    outcome.eval_duration = nanos(chunk.eval_duration);
                    outcome.done_reason = chunk.done_reason.unwrap_or_else(|| "stop".into());
                    outcome.time_to_first_token =
                        first_token_at.unwrap_or_else(Instant::now) - started;
                    return Ok(outcome);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_the_documented_statuses() {
        let status = |e: LlmError| e.to_api().code.status().as_u16();
        assert_eq!(status(LlmError::FirstTokenTimeout(Duration::ZERO)), 504);
        assert_eq!(status(LlmError::TotalTimeout(Duration::ZERO)), 504);
        assert_eq!(status(LlmError::MidStream("boom".into())), 502);
        let not_found = LlmError::Status {
            status: 404,
            message: "model 'x' not found".into(),
        };
        assert!(not_found.to_api().message.contains("model 'x' not found"));
        assert_eq!(status(not_found), 502);
        let busy = LlmError::Status {
            status: 503,
            message: "server busy".into(),
        };
        assert_eq!(status(busy), 503);
    }
}
