//! Escalation of `HIGH` urgency messages to an n8n webhook.
//!
//! Off unless `n8n.enabled`. The post runs as a tracked background task, so
//! it never delays the reply and shutdown waits for it; a failure is logged
//! and counted, never shown to the chat client.

use std::time::Duration;

use chatbot_common::api::{MessageType, Urgency};
use chatbot_common::config::N8nSettings;
use chatbot_common::error::ErrorChain;
use chatbot_common::server::Inflight;
use serde::Serialize;

use crate::metrics::Metrics;

/// What n8n receives.
#[derive(Debug, Clone, Serialize)]
pub struct UrgentMessage {
    /// Always `urgent_message`.
    pub event: &'static str,
    /// The stored exchange.
    pub message_id: uuid::Uuid,
    /// The session (absent for a stateless exchange of a compatible API).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<uuid::Uuid>,
    /// The API it came through (`native`, `openai`, `ollama`).
    pub api: chatbot_common::api::Api,
    /// The user.
    pub user_id: String,
    /// Classified type.
    #[serde(rename = "type")]
    pub kind: MessageType,
    /// Always `HIGH`.
    pub urgency: Urgency,
    /// The user's text.
    pub message: String,
    /// When it arrived (RFC 3339).
    pub timestamp: String,
}

/// Posts urgent messages to n8n, when configured.
#[derive(Clone)]
pub struct Escalator {
    target: Option<(String, reqwest::Client, Duration)>,
    inflight: Inflight,
    metrics: Metrics,
}

impl Escalator {
    /// An escalator using the shared HTTP client.
    pub fn new(
        settings: &N8nSettings,
        client: reqwest::Client,
        inflight: Inflight,
        metrics: Metrics,
    ) -> Self {
        let target = settings.enabled.then(|| {
            (
                settings.webhook_url.expose().to_owned(),
                client,
                Duration::from_millis(settings.timeout_ms),
            )
        });
        Self {
            target,
            inflight,
            metrics,
        }
    }

    /// Sends `message` in the background; returns at once.
    pub fn escalate(&self, message: UrgentMessage) {
        let Some((url, client, timeout)) = self.target.clone() else {
            return;
        };
        let metrics = self.metrics.clone();
        let post = async move {
            let sent = chatbot_common::trace_context::inject(client.post(&url))
                .timeout(timeout)
                .json(&message)
                .send()
                .await;
            match sent.and_then(reqwest::Response::error_for_status) {
                Ok(_) => {
                    tracing::info!(message_id = %message.message_id, "urgent message sent to n8n")
                }
                Err(error) => {
                    metrics.error("escalation_failed", "n8n");
                    tracing::warn!(message_id = %message.message_id, error = %ErrorChain(&error),
                        "posting the urgent message to n8n failed");
                }
            }
        };
        // With the exchange's span: the post carries its trace, and so do its
        // logs; shutdown lets it finish (it is bounded by n8n.timeout_ms).
        self.inflight.spawn(post);
    }
}
