//! The session service's metrics.
//!
//! `chatbot_active_sessions` is the number of sessions active within the idle
//! timeout. Counting is one `ZCOUNT` (O(log n)); it runs every
//! [`REFRESH_EVERY`] in the background, never per request or per scrape, and
//! the gauge reports the last count.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chatbot_common::error::ErrorChain;
use opentelemetry::metrics::Meter;
use tokio_util::sync::CancellationToken;

use session_store::SessionStore;

/// How often the active-session count is refreshed.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5);

/// Registers the instruments; returns the loop that keeps the count fresh
/// through `counting`.
pub fn register(
    meter: &Meter,
    counting: SessionStore,
    stop: CancellationToken,
) -> impl Future<Output = ()> + Send + 'static {
    let active = Arc::new(AtomicU64::new(0));
    let reported = active.clone();
    meter
        .u64_observable_gauge("chatbot_active_sessions")
        .with_description("Number of active chat sessions")
        .with_callback(move |gauge| gauge.observe(reported.load(Ordering::Relaxed), &[]))
        .build();
    refresh(counting, active, stop)
}

async fn refresh(store: SessionStore, active: Arc<AtomicU64>, stop: CancellationToken) {
    let mut ticker = tokio::time::interval(REFRESH_EVERY);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => match store.count_active().await {
                Ok(count) => active.store(count, Ordering::Relaxed),
                Err(error) => tracing::warn!(error = %ErrorChain(&error), "counting active sessions failed"),
            },
        }
    }
}
