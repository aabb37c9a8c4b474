//! The service's own instruments: how fast it generates, how long the first
//! token takes, how many requests wait, and how each generation ended.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chatbot_common::telemetry::LATENCY_BUCKETS;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter};

/// Generation speed boundaries, in tokens per second.
const RATE_BUCKETS: [f64; 12] = [
    5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 80.0, 100.0, 150.0, 200.0, 400.0,
];

/// How a generation request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The model ended its answer, or a stop sequence did.
    Stop,
    /// `num_predict` or the context window cut it.
    Length,
    /// The client hung up (queued or generating).
    Abandoned,
    /// The queue was full: Ollama's overload answer.
    Rejected,
    /// The engine failed.
    Failed,
}

impl Outcome {
    /// The `outcome` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
            Self::Abandoned => "abandoned",
            Self::Rejected => "rejected",
            Self::Failed => "failed",
        }
    }
}

/// The instruments, cheap to clone.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

struct Inner {
    generations: Counter<u64>,
    prompt_tokens: Counter<u64>,
    generated_tokens: Counter<u64>,
    first_token: Histogram<f64>,
    rate: Histogram<f64>,
}

impl Metrics {
    /// Creates the instruments on `meter`; `waiting` is the queue the
    /// `local_llm_queue_depth` gauge reads.
    pub fn new(meter: &Meter, waiting: Arc<AtomicUsize>) -> Self {
        meter
            .u64_observable_gauge("local_llm_queue_depth")
            .with_description("Generation requests waiting for the model")
            .with_callback(move |gauge| gauge.observe(waiting.load(Ordering::Relaxed) as u64, &[]))
            .build();
        Self(Arc::new(Inner {
            generations: meter
                .u64_counter("local_llm_generations")
                .with_description("Generation requests by how they ended")
                .build(),
            prompt_tokens: meter
                .u64_counter("local_llm_prompt_tokens")
                .with_description("Prompt tokens read")
                .build(),
            generated_tokens: meter
                .u64_counter("local_llm_generated_tokens")
                .with_description("Tokens generated")
                .build(),
            first_token: meter
                .f64_histogram("local_llm_time_to_first_token")
                .with_unit("s")
                .with_description("From a request's arrival to its first token, queueing included")
                .with_boundaries(LATENCY_BUCKETS.to_vec())
                .build(),
            rate: meter
                .f64_histogram("local_llm_generation_rate")
                .with_description("Generation speed after the first token, in tokens per second")
                .with_boundaries(RATE_BUCKETS.to_vec())
                .build(),
        }))
    }

    /// Counts one request that ended as `outcome`.
    pub fn ended(&self, outcome: Outcome) {
        self.0
            .generations
            .add(1, &[KeyValue::new("outcome", outcome.as_str())]);
    }

    /// Records a generation's figures.
    pub fn generation(&self, prompt_tokens: u64, generated: u64, generating: Duration) {
        self.0.prompt_tokens.add(prompt_tokens, &[]);
        self.0.generated_tokens.add(generated, &[]);
        let seconds = generating.as_secs_f64();
        if generated > 1 && seconds > 0.0 {
            self.0.rate.record((generated - 1) as f64 / seconds, &[]);
        }
    }

    /// Records the time to a first token.
    pub fn first_token(&self, after: Duration) {
        self.0.first_token.record(after.as_secs_f64(), &[]);
    }
}
