//! One chat exchange, from the validated request to the stored row.
//!
//! [`Exchange::prepare`] validates, resolves the session and its history and
//! classifies the message; the LLM call then runs as
//! [`Inflight`] work, so a client that hangs up never cancels the write of its
//! exchange; [`Exchange::finish`] stores the row (failures included) while it
//! appends the turns to the session, and escalates urgent messages.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chatbot_common::api::{
    Api, ChatResponse, Compat, ExchangeRequest, FinishReason, GenerationOptions, HistoryTurn,
    LlmDurations, MessageType, Role, Turn, Urgency, Usage,
};
use chatbot_common::error::{ApiError, ErrorChain, ErrorCode};
use chatbot_common::server::Inflight;
use chrono::{DateTime, Utc};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use crate::backends::Backends;
use crate::classify::Classifier;
use crate::db::{MessageRow, MessageWriter};
use crate::escalation::{Escalator, UrgentMessage};
use crate::llm::{LlmError, LlmMessage, LlmOutcome, Prompt};
use crate::metrics::Metrics;
use crate::sessions::{Lookup, Sessions};
use session_store::Owner;

/// Everything an exchange needs, built once at start-up.
pub struct Exchange {
    /// Longest accepted message, in characters.
    pub max_message_chars: usize,
    /// Earlier turns sent as context.
    pub history_turns: usize,
    /// How long an idle session lives (`session.idle_timeout_secs`).
    pub session_idle: Duration,
    /// First message of every conversation.
    pub system_prompt: String,
    /// Compiled keyword rules.
    pub classifier: Classifier,
    /// The LLM backends.
    pub llm: Arc<Backends>,
    /// Conversation history in Redis.
    pub sessions: Sessions,
    /// PostgreSQL writes, through the outbox when it fails.
    pub writer: MessageWriter,
    /// Exchanges this process may have in progress (`chat.max_inflight`).
    pub slots: Arc<Semaphore>,
    /// n8n escalation.
    pub escalator: Escalator,
    /// Instruments.
    pub metrics: Metrics,
    /// Exchanges in progress, which shutdown lets finish.
    pub inflight: Inflight,
    /// Log message and reply texts (`log.include_message_text`).
    pub log_message_text: bool,
}

/// A validated, classified message with its context, ready for the LLM.
#[derive(Debug)]
pub struct Prepared {
    id: Uuid,
    /// `None`: a stateless exchange of a compatible API (no session).
    session_id: Option<Uuid>,
    new_session: bool,
    owner: Owner,
    api: Api,
    model: String,
    options: GenerationOptions,
    message: String,
    kind: MessageType,
    urgency: Urgency,
    started: Instant,
    timestamp: DateTime<Utc>,
    streamed: bool,
    /// Turns read back from PostgreSQL for a session Redis lost, to put
    /// back with this exchange's.
    restored: Vec<Turn>,
    /// This exchange's place among `chat.max_inflight`.
    _slot: OwnedSemaphorePermit,
    /// The conversation sent to the model.
    pub prompt: Vec<LlmMessage>,
}

impl Exchange {
    /// Validates the request, finds or creates its session and builds the
    /// prompt. Fails only for client mistakes (422, 404 unknown session or
    /// another API key's, 404 unknown model). `api_key` is the key the
    /// gateway authenticated.
    pub async fn prepare(
        &self,
        request: ExchangeRequest,
        api_key: Option<Uuid>,
        started: Instant,
    ) -> Result<Prepared, ApiError> {
        request.validate(self.max_message_chars)?;
        let api = request.api();
        let compat = request.compat.unwrap_or_else(|| Compat {
            api,
            id: Uuid::new_v4(),
            model: None,
            system: None,
            history: Vec::new(),
            after: Vec::new(),
            options: GenerationOptions::default(),
        });
        // A model the client names must be served; the configured one is
        // tried regardless (Ollama's own answer then says what is wrong).
        let named = compat.model.is_some();
        let model = compat.model.unwrap_or_else(|| self.llm.model().to_owned());
        if named && !self.llm.offers(&model) {
            return Err(ApiError::new(
                ErrorCode::ModelNotFound,
                format!("model '{model}' not found: no LLM backend has it"),
            ));
        }
        let slot = self.admit()?;
        let owner = Owner {
            api_key,
            user_id: request.user_id,
        };
        let stateless = api != Api::Native && request.session_id.is_none();
        let (session_id, history, new_session, restored) = if stateless {
            (None, compat.history, false, Vec::new())
        } else {
            let (id, turns, new) = self.session_and_history(request.session_id, &owner).await?;
            let restored = if new && request.session_id.is_some() {
                turns.clone()
            } else {
                Vec::new()
            };
            let skip = turns.len().saturating_sub(self.history_turns);
            let recent = turns.into_iter().skip(skip).map(HistoryTurn::from);
            (Some(id), recent.collect(), new, restored)
        };
        let (kind, urgency) = self.classifier.classify(&request.message);
        let system = compat.system.unwrap_or_else(|| self.system_prompt.clone());
        let prompt = prompt(system, history, &request.message, compat.after);
        Ok(Prepared {
            id: compat.id,
            session_id,
            new_session,
            owner,
            api,
            model,
            options: compat.options,
            message: request.message,
            kind,
            urgency,
            started,
            timestamp: Utc::now(),
            streamed: request.stream,
            restored,
            _slot: slot,
            prompt,
        })
    }

    /// A place among `chat.max_inflight`, unless they are all taken or the
    /// exchange could not be kept (database down, outbox full): then 503
    /// at once, before any work.
    fn admit(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        if self.writer.outbox().is_full() {
            self.metrics.error("storage_unavailable", "database");
            return Err(ApiError::new(
                ErrorCode::StorageUnavailable,
                "the database is unavailable and the outbox is full; try again later",
            )
            .retry_after(30));
        }
        self.slots.clone().try_acquire_owned().map_err(|_| {
            self.metrics.error("overloaded", "chat");
            ApiError::new(
                ErrorCode::Overloaded,
                "this chat process has as many exchanges in progress as it takes",
            )
            .retry_after(1)
        })
    }

    async fn session_and_history(
        &self,
        session_id: Option<Uuid>,
        owner: &Owner,
    ) -> Result<(Uuid, Vec<Turn>, bool), ApiError> {
        let Some(id) = session_id else {
            // A new conversation: the session is created with its first
            // turns, in the same call that stores them (see `remember`).
            return Ok((Uuid::new_v4(), Vec::new(), true));
        };
        match self.sessions.lookup(id, owner, self.history_turns).await {
            Lookup::Found(turns) => Ok((id, turns, false)),
            Lookup::Missing => match self.restore(id, owner).await {
                Some(turns) => Ok((id, turns, true)),
                None => Err(ApiError::new(
                    ErrorCode::SessionNotFound,
                    format!("session {id} does not exist or has expired"),
                )),
            },
            Lookup::Unavailable(error) => {
                self.degraded(&error);
                Ok((id, Vec::new(), false))
            }
        }
    }

    /// The history of a session Redis does not hold but should (made while
    /// Redis was down, or lost with its data), from PostgreSQL: its owner's
    /// exchanges within the idle timeout, unless it was deleted.
    async fn restore(&self, id: Uuid, owner: &Owner) -> Option<Vec<Turn>> {
        if !self.sessions.may_restore(id).await {
            return None;
        }
        self.writer
            .recent_turns(id, owner, self.history_turns, self.session_idle)
            .await
    }

    fn degraded(&self, error: &ApiError) {
        self.metrics.error(error.code.as_str(), "session");
        tracing::debug!(error = %error.message, "session store unavailable; answering without history");
    }

    /// Calls the LLM (handing tokens to `on_token`) and finishes the
    /// exchange. Also returns how long the LLM call took. If this is dropped
    /// before the row is stored (the service stopped past its grace period),
    /// the message is still recorded, with a `service_unavailable` error,
    /// through the outbox (see [`Unfinished`]).
    pub async fn complete(
        &self,
        prepared: Prepared,
        on_token: impl FnMut(&str),
    ) -> (Result<ChatResponse, ApiError>, Duration) {
        let mut unfinished = Unfinished {
            exchange: self,
            prepared: &prepared,
            armed: true,
        };
        let started = Instant::now();
        let result = self.generate(&prepared, on_token).await;
        let llm_time = started.elapsed();
        let response = self.finish(&prepared, result).await;
        unfinished.armed = false;
        (response, llm_time)
    }

    /// Calls the LLM, handing tokens to `on_token`.
    async fn generate(
        &self,
        prepared: &Prepared,
        on_token: impl FnMut(&str),
    ) -> Result<LlmOutcome, LlmError> {
        let started = tokio::time::Instant::now();
        let prompt = Prompt {
            model: &prepared.model,
            messages: &prepared.prompt,
            options: &prepared.options,
        };
        let result = self.llm.chat(prompt, on_token, started).await;
        self.metrics
            .llm_call(&prepared.model, started.elapsed(), result.as_ref().ok());
        if let Err(error) = &result {
            tracing::debug!(message_id = %prepared.id, error = %ErrorChain(error), "LLM call failed");
        }
        result
    }

    /// Stores the exchange, updates the session, escalates, and returns what
    /// the client gets.
    async fn finish(
        &self,
        prepared: &Prepared,
        result: Result<LlmOutcome, LlmError>,
    ) -> Result<ChatResponse, ApiError> {
        let elapsed = prepared.started.elapsed();
        let response_time_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        let mut result = result.map_err(|e| e.to_api());
        // The row and the session turns are independent: store both at once.
        let stored = self.writer.write(row(prepared, &result, response_time_ms));
        let remembered = async {
            if let Ok(outcome) = &result {
                self.remember(prepared, &outcome.reply).await;
            }
        };
        let (stored, ()) = tokio::join!(stored, remembered);
        if stored.is_err() {
            // Neither stored nor kept: refused rather than answered and lost.
            result = Err(ApiError::new(
                ErrorCode::StorageUnavailable,
                "the exchange could not be stored; try again later",
            )
            .retry_after(30));
        }
        self.metrics
            .message(prepared.kind, prepared.urgency, prepared.api);
        if let Err(error) = &result {
            self.metrics.error(error.code.as_str(), "llm");
        }
        if prepared.urgency == Urgency::High {
            self.escalator.escalate(urgent(prepared));
        }
        let outcome = result?;
        self.log_processed(prepared, &outcome.reply, response_time_ms);
        Ok(ChatResponse {
            session_id: prepared.session_id,
            message_id: prepared.id,
            reply: outcome.reply,
            kind: prepared.kind,
            urgency: prepared.urgency,
            model: prepared.model.clone(),
            response_time_ms,
            usage: Usage {
                prompt_tokens: outcome.prompt_tokens,
                completion_tokens: outcome.completion_tokens,
            },
            finish_reason: FinishReason::from_done_reason(&outcome.done_reason),
            durations: (prepared.api != Api::Native).then(|| LlmDurations {
                load_ns: nanos(outcome.load_duration),
                prompt_eval_ns: nanos(outcome.prompt_eval_duration),
                eval_ns: nanos(outcome.eval_duration),
            }),
        })
    }

    /// One line per exchange; texts only with `log.include_message_text`.
    fn log_processed(&self, prepared: &Prepared, reply: &str, response_time_ms: u64) {
        let (message_text, reply_text) = if self.log_message_text {
            (prepared.message.as_str(), reply)
        } else {
            ("", "")
        };
        tracing::info!(
            message_id = %prepared.id, session_id = prepared.session_id.map(tracing::field::display), api = prepared.api.as_str(),
            user_id = %prepared.owner.user_id, message_length = prepared.message.chars().count(),
            reply_length = reply.chars().count(), processing_time_ms = response_time_ms,
            message_text = (!message_text.is_empty()).then_some(message_text),
            reply_text = (!reply_text.is_empty()).then_some(reply_text),
            "message processed"
        );
    }

    async fn remember(&self, prepared: &Prepared, reply: &str) {
        let Some(session_id) = prepared.session_id else {
            return;
        };
        let now = Utc::now();
        let turn = |role, content: &str| Turn {
            role,
            content: content.to_owned(),
            message_id: Some(prepared.id),
            created_at: now,
        };
        let mut turns = prepared.restored.clone();
        turns.extend([
            turn(Role::User, &prepared.message),
            turn(Role::Assistant, reply),
        ]);
        let create_for = prepared.new_session.then_some(&prepared.owner);
        if let Err(error) = self.sessions.append(session_id, &turns, create_for).await {
            self.metrics.error(error.code.as_str(), "session");
            tracing::debug!(session_id = %session_id, error = %error.message,
                "could not add the exchange to the session");
        }
    }

    /// Runs a non-streamed request from start to stored row as [`Inflight`]
    /// work, so the exchange is stored even if the client hangs up. Also
    /// returns how long the LLM call took, so the gateway can tell the
    /// service's own overhead from the time spent waiting on the model.
    pub async fn run(
        self: Arc<Self>,
        request: ExchangeRequest,
        api_key: Option<Uuid>,
        started: Instant,
    ) -> Result<(ChatResponse, Duration), ApiError> {
        let this = self.clone();
        self.inflight
            .run(async move {
                let prepared = this.prepare(request, api_key, started).await?;
                let (response, llm_time) = this.complete(prepared, |_| {}).await;
                response.map(|r| (r, llm_time))
            })
            .await
    }
}

/// The record of an exchange in progress, stored if the exchange is dropped
/// before its own row is (the service stopped past its grace period, a
/// panic): the message with a `service_unavailable` error, through the
/// outbox, so no message is lost. When the real row was stored first, this
/// one changes nothing (same id, `ON CONFLICT DO NOTHING`).
struct Unfinished<'a> {
    exchange: &'a Exchange,
    prepared: &'a Prepared,
    armed: bool,
}

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let cut = Err(ApiError::new(
            ErrorCode::ServiceUnavailable,
            "the chat service stopped before the reply was complete",
        ));
        let elapsed = self.prepared.started.elapsed().as_millis();
        let elapsed = u64::try_from(elapsed).unwrap_or(u64::MAX);
        let row = row(self.prepared, &cut, elapsed);
        tracing::warn!(message_id = %row.id, "exchange cut short; storing the message with an error");
        self.exchange.writer.keep_now(&row);
    }
}

/// The conversation sent to the model: `system`, `history` (a session's
/// last `chat.history_turns`, or all a client sent), `message`, then what
/// the client sent after it (`after`).
fn prompt(
    system: String,
    history: Vec<HistoryTurn>,
    message: &str,
    after: Vec<HistoryTurn>,
) -> Vec<LlmMessage> {
    let turn = |turn: HistoryTurn| LlmMessage {
        role: match turn.role {
            Role::User => "user",
            Role::Assistant => "assistant",
        },
        content: turn.content,
    };
    let mut prompt = Vec::with_capacity(history.len() + after.len() + 2);
    prompt.push(LlmMessage {
        role: "system",
        content: system,
    });
    prompt.extend(history.into_iter().map(turn));
    prompt.push(LlmMessage {
        role: "user",
        content: message.to_owned(),
    });
    prompt.extend(after.into_iter().map(turn));
    prompt
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

fn row(
    prepared: &Prepared,
    result: &Result<LlmOutcome, ApiError>,
    response_time_ms: u64,
) -> MessageRow {
    let ok = result.as_ref().ok();
    let err = result.as_ref().err();
    let tokens = |n: u32| i32::try_from(n).ok();
    MessageRow {
        id: prepared.id,
        session_id: prepared.session_id,
        user_id: prepared.owner.user_id.clone(),
        api_key_id: prepared.owner.api_key,
        timestamp: prepared.timestamp,
        kind: prepared.kind,
        urgency: prepared.urgency,
        message: prepared.message.clone(),
        reply: ok.map(|o| o.reply.clone()),
        model: prepared.model.clone(),
        api: prepared.api,
        response_time_ms: i32::try_from(response_time_ms).unwrap_or(i32::MAX),
        prompt_tokens: ok.and_then(|o| tokens(o.prompt_tokens)),
        completion_tokens: ok.and_then(|o| tokens(o.completion_tokens)),
        streamed: prepared.streamed,
        error: err.map(|e| e.message.clone()),
        error_code: err.map(|e| e.code),
    }
}

fn urgent(prepared: &Prepared) -> UrgentMessage {
    UrgentMessage {
        event: "urgent_message",
        message_id: prepared.id,
        session_id: prepared.session_id,
        api: prepared.api,
        user_id: prepared.owner.user_id.clone(),
        kind: prepared.kind,
        urgency: prepared.urgency,
        message: prepared.message.clone(),
        timestamp: prepared.timestamp.to_rfc3339(),
    }
}
