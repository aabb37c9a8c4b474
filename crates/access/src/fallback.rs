//! When Redis cannot answer a limit check: bound the wait, fall back to this
//! replica's own count for a while, and say so once in each direction.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use chatbot_common::error::ErrorChain;

/// How long a check may wait for Redis before this replica decides alone.
pub const REDIS_BUDGET: Duration = Duration::from_millis(250);
/// How long this replica decides alone after Redis failed.
pub const REDIS_BACKOFF: Duration = Duration::from_secs(1);

/// Why Redis could not decide.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RedisFailure {
    #[error("the limit script failed")]
    Script(#[from] redis::RedisError),
    #[error("Redis took longer than {REDIS_BUDGET:?}")]
    Timeout,
}

/// Whether Redis is to be asked, for one kind of limit (`what`).
pub(crate) struct Fallback {
    what: &'static str,
    down_until: Mutex<Option<Instant>>,
}

impl Fallback {
    pub(crate) fn new(what: &'static str) -> Self {
        Self {
            what,
            down_until: Mutex::new(None),
        }
    }

    /// Runs `check` against Redis within [`REDIS_BUDGET`]; `None` when Redis
    /// failed now or recently, and this replica is to decide alone.
    pub(crate) async fn ask<T>(
        &self,
        check: impl Future<Output = Result<T, RedisFailure>>,
    ) -> Option<T> {
        if self.resting() {
            return None;
        }
        let outcome = tokio::time::timeout(REDIS_BUDGET, check)
            .await
            .unwrap_or(Err(RedisFailure::Timeout));
        match outcome {
            Ok(answer) => {
                self.answered();
                Some(answer)
            }
            Err(failure) => {
                self.failed(&failure);
                None
            }
        }
    }

    fn resting(&self) -> bool {
        let until = self
            .down_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        until.is_some_and(|until| Instant::now() < until)
    }

    fn failed(&self, failure: &RedisFailure) {
        let mut until = self
            .down_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if until.is_none() {
            tracing::error!(
                error = %ErrorChain(failure),
                "{}: Redis unreachable, this replica limits on its own", self.what
            );
        }
        *until = Some(Instant::now() + REDIS_BACKOFF);
    }

    fn answered(&self) {
        let mut until = self
            .down_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if until.take().is_some() {
            tracing::error!("{}: Redis is back, limits are shared again", self.what);
        }
    }
}
