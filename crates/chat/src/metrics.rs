//! The chat service's metrics, all declared here.
//!
//! Names follow the operations documentation; the Prometheus exporter adds
//! the `_total` and unit suffixes:
//! `chatbot_messages_total{type, urgency, api}` (`api`: `native`, `openai`,
//! `ollama`), `chatbot_errors_total{type, component}`,
//! `chatbot_llm_request_duration_seconds{model, outcome}`,
//! `chatbot_llm_time_to_first_token_seconds{model}`,
//! `chatbot_llm_tokens_total{model, direction}`,
//! `chatbot_llm_time_per_output_token_seconds{model}`,
//! `chatbot_llm_model_load_duration_seconds{model}` (Ollama's `load_duration`),
//! `chatbot_pool_connections{pool="postgres", state}`,
//! `chatbot_outbox_rows`, `chatbot_outbox_size_bytes` and
//! `chatbot_outbox_oldest_age_seconds` (the durable outbox, see
//! [`crate::outbox`]); the LLM backends' own are in [`crate::backends`].
//! Every label takes values from a fixed set; the model is the configured one
//! or one the backends list (a compatible API's client may choose, see
//! `Backends::offers`), cut to 64 characters.

use std::sync::Arc;
use std::time::Duration;

use chatbot_common::api::{Api, MessageType, Urgency};
use chatbot_common::telemetry::LATENCY_BUCKETS;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter};

use crate::llm::LlmOutcome;
use crate::outbox;

/// Exports what the outbox holds, read at each scrape.
pub fn export_outbox(meter: &Meter, stats: Arc<outbox::Stats>) {
    use std::sync::atomic::Ordering::Relaxed;
    let rows = stats.clone();
    meter
        .u64_observable_gauge("chatbot_outbox_rows")
        .with_description("Exchanges kept on disk until the database takes them")
        .with_callback(move |gauge| gauge.observe(rows.rows.load(Relaxed), &[]))
        .build();
    let bytes = stats.clone();
    meter
        .u64_observable_gauge("chatbot_outbox_size")
        .with_unit("By")
        .with_description("Bytes of exchanges kept on disk until the database takes them")
        .with_callback(move |gauge| gauge.observe(bytes.bytes.load(Relaxed), &[]))
        .build();
    meter
        .f64_observable_gauge("chatbot_outbox_oldest_age")
        .with_unit("s")
        .with_description("Age of the oldest exchange waiting in the outbox (0: empty)")
        .with_callback(move |gauge| {
            let oldest = stats.oldest_ms.load(Relaxed);
            let age = if oldest == 0 {
                0.0
            } else {
                (chrono::Utc::now().timestamp_millis() - oldest).max(0) as f64 / 1000.0
            };
            gauge.observe(age, &[]);
        })
        .build();
}

/// Instruments of the chat service.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

struct Inner {
    messages: Counter<u64>,
    errors: Counter<u64>,
    llm_duration: Histogram<f64>,
    first_token: Histogram<f64>,
    per_token: Histogram<f64>,
    load: Histogram<f64>,
    tokens: Counter<u64>,
}

impl Metrics {
    /// Creates the instruments on `meter`.
    pub fn new(meter: &Meter) -> Self {
        let seconds = |name: &'static str, help: &'static str| {
            meter
                .f64_histogram(name)
                .with_unit("s")
                .with_description(help)
                .with_boundaries(LATENCY_BUCKETS.to_vec())
                .build()
        };
        Self(Arc::new(Inner {
            messages: meter
                .u64_counter("chatbot_messages")
                .with_description("Total number of processed messages")
                .build(),
            errors: meter
                .u64_counter("chatbot_errors")
                .with_description("Total number of errors")
                .build(),
            llm_duration: seconds("chatbot_llm_request_duration", "Duration of LLM calls"),
            first_token: seconds(
                "chatbot_llm_time_to_first_token",
                "Time to the first LLM token",
            ),
            per_token: seconds(
                "chatbot_llm_time_per_output_token",
                "Time per output token after the first",
            ),
            load: seconds(
                "chatbot_llm_model_load_duration",
                "Model load time reported by the LLM",
            ),
            tokens: meter
                .u64_counter("chatbot_llm_tokens")
                .with_description("Tokens processed by the LLM")
                .build(),
        }))
    }

    /// Counts one processed message.
    pub fn message(&self, kind: MessageType, urgency: Urgency, api: Api) {
        self.0.messages.add(
            1,
            &[
                KeyValue::new("type", kind.as_str()),
                KeyValue::new("urgency", urgency.as_str()),
                KeyValue::new("api", api.as_str()),
            ],
        );
    }

    /// Counts one error of `kind` (a stable code) in `component`.
    pub fn error(&self, kind: &'static str, component: &'static str) {
        self.0.errors.add(
            1,
            &[
                KeyValue::new("type", kind),
                KeyValue::new("component", component),
            ],
        );
    }

    /// Records one LLM call to `model`.
    pub fn llm_call(&self, model: &str, elapsed: Duration, outcome: Option<&LlmOutcome>) {
        let model = KeyValue::new("model", model.chars().take(64).collect::<String>());
        let result = if outcome.is_some() { "ok" } else { "error" };
        self.0.llm_duration.record(
            elapsed.as_secs_f64(),
            &[model.clone(), KeyValue::new("outcome", result)],
        );
        if let Some(o) = outcome {
            self.0.first_token.record(
                o.time_to_first_token.as_secs_f64(),
                std::slice::from_ref(&model),
            );
            let generating = elapsed.saturating_sub(o.time_to_first_token);
            let later_tokens = f64::from(o.completion_tokens.saturating_sub(1).max(1));
            let one = std::slice::from_ref(&model);
            self.0
                .per_token
                .record(generating.as_secs_f64() / later_tokens, one);
            self.0.load.record(o.load_duration.as_secs_f64(), one);
            let dir = |d: &'static str| [model.clone(), KeyValue::new("direction", d)];
            self.0.tokens.add(u64::from(o.prompt_tokens), &dir("input"));
            self.0
                .tokens
                .add(u64::from(o.completion_tokens), &dir("output"));
        }
    }
}
