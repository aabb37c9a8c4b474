//! Readiness checks: what a service needs before it can serve traffic.
//!
//! A service registers one [`ReadinessCheck`] per required dependency; `/readyz`
//! runs them concurrently, each with a timeout, and answers 200 when all pass
//! and 503 otherwise. `/livez` never runs a check: it only proves the process
//! answers.

use std::sync::Arc;
use std::time::Duration;

use futures::future::{BoxFuture, join_all};
use serde::Serialize;

/// One required dependency of a service.
pub trait ReadinessCheck: Send + Sync + 'static {
    /// Component name, such as `database` or `redis`.
    fn name(&self) -> &'static str;
    /// Resolves to `Err(reason)` when the dependency cannot be used.
    fn check(&self) -> BoxFuture<'_, Result<(), String>>;
}

/// The outcome of one check.
#[derive(Debug, Clone, Serialize)]
pub struct CheckOutcome {
    /// `ok` or `error`.
    pub status: &'static str,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How long the check took, in milliseconds.
    pub duration_ms: u64,
}

/// The `/readyz` body.
#[derive(Debug, Clone, Serialize)]
pub struct ReadinessReport {
    /// `ready` or `not_ready`.
    pub status: &'static str,
    /// Outcome per component.
    pub checks: std::collections::BTreeMap<&'static str, CheckOutcome>,
}

impl ReadinessReport {
    /// True when every check passed.
    pub fn is_ready(&self) -> bool {
        self.status == "ready"
    }
}

/// Runs every check concurrently, each bounded by `timeout`.
pub async fn run_checks(checks: &[Arc<dyn ReadinessCheck>], timeout: Duration) -> ReadinessReport {
    let outcomes = join_all(checks.iter().map(|c| async move {
        let started = std::time::Instant::now();
        let result = match tokio::time::timeout(timeout, c.check()).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
        };
        let outcome = CheckOutcome {
            status: if result.is_ok() { "ok" } else { "error" },
            error: result.err(),
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        };
        (c.name(), outcome)
    }))
    .await;
    let ready = outcomes.iter().all(|(_, o)| o.error.is_none());
    ReadinessReport {
        status: if ready { "ready" } else { "not_ready" },
        checks: outcomes.into_iter().collect(),
    }
}

/// A check made from a closure, for dependencies checked with one call.
struct FnCheck<F> {
    name: &'static str,
    check: F,
}

/// A named check made from a closure.
pub fn check_fn<F>(name: &'static str, check: F) -> Arc<dyn ReadinessCheck>
where
    F: Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync + 'static,
{
    Arc::new(FnCheck { name, check })
}

impl<F> ReadinessCheck for FnCheck<F>
where
    F: Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync + 'static,
{
    fn name(&self) -> &'static str {
        self.name
    }
    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        (self.check)()
    }
}
