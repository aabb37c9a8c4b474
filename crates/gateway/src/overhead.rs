//! What the service itself adds to a chat request: the gateway's request time
//! minus the time the LLM kept the request waiting (reported by chat in the
//! `x-chatbot-llm-wait-us` header).
//!
//! For a JSON answer that is the whole request; for a stream it is the time
//! to the response head (which chat sends with the first token) minus the
//! LLM's time to first token. Every chat request records it in
//! `chatbot_gateway_overhead_seconds{mode}` (`mode` is `json` or `stream`)
//! and returns it to the client in the `x-chatbot-overhead-ms` header.

use std::time::{Duration, Instant};

use actix_web::HttpResponse;
use actix_web::http::header::{HeaderName, HeaderValue};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, Meter};

/// The response header carrying the overhead, in milliseconds.
pub const OVERHEAD_HEADER: &str = "x-chatbot-overhead-ms";

/// Buckets for sub-millisecond to tenth-of-a-second overheads, in seconds.
const BUCKETS: [f64; 14] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// The overhead histogram.
#[derive(Clone)]
pub struct Overhead(Histogram<f64>);

impl Overhead {
    /// Creates the instrument on `meter`.
    pub fn new(meter: &Meter) -> Self {
        Self(
            meter
                .f64_histogram("chatbot_gateway_overhead")
                .with_unit("s")
                .with_description("Chat request time at the gateway minus time waiting on the LLM")
                .with_boundaries(BUCKETS.to_vec())
                .build(),
        )
    }

    /// Records the overhead of a request that started at `started` and
    /// waited `llm_wait` on the LLM, and puts it in `response`'s headers.
    pub fn finish(
        &self,
        response: &mut HttpResponse,
        started: Instant,
        llm_wait: Option<Duration>,
        streamed: bool,
    ) {
        let Some(waited) = llm_wait else {
            return;
        };
        let overhead = started.elapsed().saturating_sub(waited);
        let mode = if streamed { "stream" } else { "json" };
        self.0
            .record(overhead.as_secs_f64(), &[KeyValue::new("mode", mode)]);
        let millis = format!("{:.3}", overhead.as_secs_f64() * 1000.0);
        if let Ok(value) = HeaderValue::from_str(&millis) {
            response
                .headers_mut()
                .insert(HeaderName::from_static(OVERHEAD_HEADER), value);
        }
    }
}
