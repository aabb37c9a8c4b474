//! Waiting for a condition instead of sleeping a fixed time: [`until`] polls
//! a probe every 50 ms and fails the test, naming what it waited for, when
//! the deadline passes first.

use std::time::{Duration, Instant};

/// Polls `probe` until it yields `Some`, and returns that value; panics with
/// `what` once `within` has passed without it.
pub async fn until<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "waited {within:?} for {what}, in vain"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
