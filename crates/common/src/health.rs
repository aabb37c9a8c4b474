//! Readiness: what a service needs before it can serve traffic.
//!
//! A service registers one [`Probe`] per required dependency
//! ([`crate::server::ServiceBuilder::readiness`]); `/readyz` runs them
//! concurrently, each with a timeout, and answers 200 when none fails and
//! 503 otherwise. `/livez` never runs a probe: it only proves the process
//! answers. [`LiveSignal`] lets live traffic fail a probe early.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::join_all;
use serde::Serialize;

use crate::probe::{CheckError, Level, Probe};

/// One required dependency: its name (`database`, `redis`) and its probe.
pub type Required = (&'static str, Box<dyn Probe>);

/// How one check went: `ok` or `error` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    /// The dependency can be used.
    Ok,
    /// It cannot.
    Error,
}

/// Whether the service can take traffic: `ready` or `not_ready` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Readiness {
    /// Every check passed.
    Ready,
    /// At least one failed.
    NotReady,
}

/// The outcome of one check.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CheckOutcome {
    /// Whether it passed.
    pub status: CheckStatus,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How long the check took, in milliseconds.
    pub duration_ms: u64,
}

/// The `/readyz` body.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReadinessReport {
    /// Ready when every check passed.
    pub status: Readiness,
    /// Outcome per component.
    pub checks: BTreeMap<&'static str, CheckOutcome>,
}

impl ReadinessReport {
    /// True when every check passed.
    pub fn is_ready(&self) -> bool {
        self.status == Readiness::Ready
    }
}

/// Runs every probe concurrently, each bounded by `timeout`; a warning
/// (a disk filling up) does not make a service unready, a failure does.
pub async fn run_checks(checks: &[Required], timeout: Duration) -> ReadinessReport {
    let outcomes = join_all(checks.iter().map(|(name, probe)| async move {
        let started = std::time::Instant::now();
        let error = match tokio::time::timeout(timeout, probe.run()).await {
            Ok(seen) if seen.level == Level::Fail => {
                Some(seen.output.unwrap_or_else(|| "failed".to_owned()))
            }
            Ok(_) => None,
            Err(_) => Some(CheckError::Timeout(timeout).to_string()),
        };
        let outcome = CheckOutcome {
            status: if error.is_none() {
                CheckStatus::Ok
            } else {
                CheckStatus::Error
            },
            error,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        };
        (*name, outcome)
    }))
    .await;
    let ready = outcomes.iter().all(|(_, o)| o.error.is_none());
    ReadinessReport {
        status: if ready {
            Readiness::Ready
        } else {
            Readiness::NotReady
        },
        checks: outcomes.into_iter().collect(),
    }
}

/// What live traffic says about a dependency, so readiness reflects failures
/// as they happen rather than at the next probe.
///
/// Callers report every call's outcome; after [`LiveSignal::THRESHOLD`]
/// failures in a row, the dependency counts as down until a call succeeds or
/// [`LiveSignal::FORGET_AFTER`] passes without a new failure. Going down and
/// coming back are logged at ERROR, once each, so the error log tells an
/// outage's story without a line per request.
#[derive(Debug)]
pub struct LiveSignal {
    name: &'static str,
    state: std::sync::Mutex<LiveState>,
}

#[derive(Debug, Default)]
struct LiveState {
    failures_in_a_row: u32,
    last_failure: Option<(std::time::Instant, String)>,
    down: bool,
}

impl Default for LiveSignal {
    fn default() -> Self {
        Self::named("dependency")
    }
}

impl LiveSignal {
    /// Failures in a row that make the dependency count as down.
    pub const THRESHOLD: u32 = 3;
    /// How long a run of failures counts without a new one.
    pub const FORGET_AFTER: Duration = Duration::from_secs(30);

    /// The signal of the dependency `name` (as the logs call it).
    pub fn named(name: &'static str) -> Self {
        Self {
            name,
            state: std::sync::Mutex::default(),
        }
    }

    /// A call succeeded.
    pub fn success(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.failures_in_a_row = 0;
            if std::mem::take(&mut state.down) {
                tracing::error!(dependency = self.name, "{} recovered", self.name);
            }
        }
    }

    /// A call failed because of the dependency.
    pub fn failure(&self, reason: impl Into<String>) {
        if let Ok(mut state) = self.state.lock() {
            let reason = reason.into();
            state.failures_in_a_row = state.failures_in_a_row.saturating_add(1);
            if state.failures_in_a_row >= Self::THRESHOLD && !state.down {
                state.down = true;
                tracing::error!(dependency = self.name, error = %reason,
                    "{} is failing: requests that need it are degraded", self.name);
            }
            state.last_failure = Some((std::time::Instant::now(), reason));
        }
    }

    /// `Err` while recent live calls keep failing.
    pub fn check(&self) -> Result<(), CheckError> {
        let Ok(state) = self.state.lock() else {
            return Ok(());
        };
        match &state.last_failure {
            Some((at, reason))
                if state.failures_in_a_row >= Self::THRESHOLD
                    && at.elapsed() < Self::FORGET_AFTER =>
            {
                Err(CheckError::FailingLive {
                    failures: state.failures_in_a_row,
                    reason: reason.clone(),
                })
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_of_failures_makes_the_signal_fail_until_a_success() {
        let signal = LiveSignal::default();
        signal.failure("refused");
        signal.failure("refused");
        assert!(signal.check().is_ok(), "two failures are not yet a run");
        signal.failure("refused");
        let err = signal
            .check()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("last 3 calls failed") && err.contains("refused"),
            "{err}"
        );
        signal.success();
        assert!(signal.check().is_ok());
    }
}
