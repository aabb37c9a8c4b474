//! Looking at a dependency: one abstraction for a service's `/readyz` and
//! the health aggregator's components.
//!
//! A [`Probe`] looks once and says what it saw as an [`Observation`]: a
//! [`Level`], perhaps a measured value, and the reason when it is not
//! `pass`; a [`Check`] only passes or fails, and is a probe by that. `/readyz` fails when any probe fails (see [`crate::health`]); the
//! aggregator grades, times and caches the same observations into the
//! verdict. The probes every user shares live here: PostgreSQL (`SELECT 1`),
//! Redis (`PING`), and an HTTP endpoint that answers 2xx when healthy.
//! Whoever runs a probe bounds it with a timeout.

use std::time::Duration;

use futures::future::BoxFuture;

use crate::error::ErrorChain;
pub use crate::system::Level;
use crate::upstream::Upstream;

/// Why a dependency cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CheckError {
    /// It did not answer in time.
    #[error("no answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    /// It could not be reached, or the call failed (the cause's chain).
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// It answered with a status that means trouble.
    #[error("{what} answered {status}")]
    Status {
        /// What was asked (`/readyz`).
        what: String,
        /// The HTTP status.
        status: u16,
    },
    /// It answered something that could not be read.
    #[error("unreadable {what}: {reason}")]
    Unreadable {
        /// What was read.
        what: &'static str,
        /// Why it could not be.
        reason: String,
    },
    /// Live traffic to it keeps failing.
    #[error("the last {failures} calls failed in live traffic: {reason}")]
    FailingLive {
        /// Failures in a row.
        failures: u32,
        /// The latest one.
        reason: String,
    },
    /// The host could not be read (disk, memory).
    #[error("{0}")]
    Host(String),
    /// The LLM lacks the configured model.
    #[error("model '{0}' is not available; pull it with `ollama pull {0}`")]
    MissingModel(String),
}

impl CheckError {
    /// The call failed with `error`: unreachable, with its chain of causes.
    pub fn unreachable(error: &(dyn std::error::Error + 'static)) -> Self {
        Self::Unreachable(ErrorChain(error).to_string())
    }
}

/// What one look at a dependency saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// The outcome.
    pub level: Level,
    /// A measured value (free space, available memory) with its unit.
    pub value: Option<(&'static str, f64, &'static str)>,
    /// Why it warned or failed, or a note (the model is present).
    pub output: Option<String>,
}

impl Observation {
    /// Healthy, nothing to say.
    pub fn pass() -> Self {
        Self {
            level: Level::Pass,
            value: None,
            output: None,
        }
    }

    /// Not usable, because of `error`.
    pub fn fail(error: &CheckError) -> Self {
        Self {
            level: Level::Fail,
            value: None,
            output: Some(error.to_string()),
        }
    }
}

impl From<Result<(), CheckError>> for Observation {
    fn from(result: Result<(), CheckError>) -> Self {
        result.map_or_else(|e| Self::fail(&e), |()| Self::pass())
    }
}

/// How one dependency is looked at.
pub trait Probe: Send + Sync + 'static {
    /// Looks once.
    fn run(&self) -> BoxFuture<'_, Observation>;
}

/// A probe that only passes or fails (no warning, no measured value): every
/// `Check` is a [`Probe`] whose failure is the observation's reason.
pub trait Check: Send + Sync + 'static {
    /// `Ok` when the dependency can be used.
    fn check(&self) -> BoxFuture<'_, Result<(), CheckError>>;
}

impl<T: Check> Probe for T {
    fn run(&self) -> BoxFuture<'_, Observation> {
        Box::pin(async move { self.check().await.into() })
    }
}

/// A check made from a closure.
pub fn probe_fn<F>(check: F) -> impl Probe
where
    F: Fn() -> BoxFuture<'static, Result<(), CheckError>> + Send + Sync + 'static,
{
    FnCheck(check)
}

struct FnCheck<F>(F);

impl<F> Check for FnCheck<F>
where
    F: Fn() -> BoxFuture<'static, Result<(), CheckError>> + Send + Sync + 'static,
{
    fn check(&self) -> BoxFuture<'_, Result<(), CheckError>> {
        (self.0)()
    }
}

/// An HTTP endpoint that answers 2xx when healthy: a peer's `/livez` or
/// `/readyz`, Ollama's `/api/version`, n8n's health URL.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Whose endpoint.
    pub upstream: Upstream,
    /// The path to `GET`.
    pub path: String,
}

impl Endpoint {
    /// `GET path` on `upstream`.
    pub fn new(upstream: Upstream, path: impl Into<String>) -> Self {
        Self {
            upstream,
            path: path.into(),
        }
    }

    /// One `GET`: the answer when it is 2xx, for callers that read it.
    pub async fn get(&self) -> Result<reqwest::Response, CheckError> {
        let response = self
            .upstream
            .get(&self.path)
            .send()
            .await
            .map_err(|e| CheckError::unreachable(&e))?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(CheckError::Status {
                what: self.path.clone(),
                status: response.status().as_u16(),
            })
        }
    }
}

impl Check for Endpoint {
    fn check(&self) -> BoxFuture<'_, Result<(), CheckError>> {
        Box::pin(async move { self.get().await.map(drop) })
    }
}

/// PostgreSQL: `SELECT 1` on a pooled connection.
#[cfg(feature = "postgres")]
pub struct Postgres(pub deadpool_postgres::Pool);

#[cfg(feature = "postgres")]
impl Check for Postgres {
    fn check(&self) -> BoxFuture<'_, Result<(), CheckError>> {
        Box::pin(async move {
            let client = self
                .0
                .get()
                .await
                .map_err(|e| CheckError::unreachable(&e))?;
            client
                .execute("SELECT 1", &[])
                .await
                .map_err(|e| CheckError::unreachable(&e))?;
            Ok(())
        })
    }
}

/// Redis: `PING` on the shared connection ([`crate::pools::redis_shared`]).
#[cfg(feature = "redis")]
pub struct Redis(pub redis::aio::ConnectionManager);

#[cfg(feature = "redis")]
impl Check for Redis {
    fn check(&self) -> BoxFuture<'_, Result<(), CheckError>> {
        Box::pin(async move {
            let mut conn = self.0.clone();
            redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .map_err(|e| CheckError::unreachable(&e))?;
            Ok(())
        })
    }
}
