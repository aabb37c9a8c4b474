//! The gateway's copy of the active keys.
//!
//! [`KeyCache::run_every`] reloads the whole set from PostgreSQL every
//! `auth.refresh_secs` (the table holds one short row per key), so checking a
//! request is one SHA-256 and one map lookup, and a key made or revoked takes
//! effect within one period. When PostgreSQL cannot be reached the last set
//! stays in use (logged at ERROR once, and once more when it is back); before
//! a first load succeeds, requests are answered 503 rather than 401, so a
//! valid key is never told it is wrong.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use chatbot_common::error::ErrorChain;
use tokio_util::sync::CancellationToken;

use crate::store::{ApiKey, KeyStore, StoreError};
use crate::token::{self, Digest};

type Keys = Arc<HashMap<Digest, Arc<ApiKey>>>;

/// Why a request was not authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("an API key is required: send Authorization: Bearer <key>")]
    Missing,
    /// Not `Bearer <key>`, or not shaped like a key.
    #[error("the Authorization header is not 'Bearer <key>' with a valid key")]
    Malformed,
    /// Well formed, but unknown or revoked.
    #[error("the API key is unknown or revoked")]
    Unknown,
    /// The keys could not be loaded yet.
    #[error("API keys cannot be checked yet (the key table is unreachable)")]
    NotLoaded,
}

impl AuthError {
    /// A bounded label for metrics and logs.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::Unknown => "unknown",
            Self::NotLoaded => "not_loaded",
        }
    }
}

/// The active keys by digest.
pub struct KeyCache {
    store: KeyStore,
    keys: RwLock<Option<Keys>>,
    failing: AtomicBool,
}

impl KeyCache {
    /// An empty cache over `store`; call [`Self::refresh`] or
    /// [`Self::run_every`] to fill it.
    pub fn new(store: KeyStore) -> Arc<Self> {
        Arc::new(Self {
            store,
            keys: RwLock::new(None),
            failing: AtomicBool::new(false),
        })
    }

    /// Whether a first load has succeeded.
    pub fn is_loaded(&self) -> bool {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Reloads the active keys; returns how many there are.
    pub async fn refresh(&self) -> Result<usize, StoreError> {
        let active = self.store.active().await?;
        let keys: HashMap<Digest, Arc<ApiKey>> = active
            .into_iter()
            .map(|(digest, key)| (digest, Arc::new(key)))
            .collect();
        let count = keys.len();
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(keys));
        Ok(count)
    }

    /// Reloads every `interval` until `stop`, logging a failure once when it
    /// starts and once when it ends.
    pub async fn run_every(self: Arc<Self>, interval: Duration, stop: CancellationToken) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticks.tick() => self.refresh_logged().await,
            }
        }
    }

    async fn refresh_logged(&self) {
        match self.refresh().await {
            Ok(count) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::error!(keys = count, "API keys reloaded: the key table is back");
                }
            }
            Err(error) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::error!(
                        error = %ErrorChain(&error),
                        "API keys cannot be reloaded; the last loaded keys stay in use"
                    );
                }
            }
        }
    }

    /// The key an `Authorization` header value names.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Arc<ApiKey>, AuthError> {
        let presented = bearer(authorization.ok_or(AuthError::Missing)?)?;
        let keys = self
            .keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or(AuthError::NotLoaded)?;
        keys.get(&token::digest(presented))
            .cloned()
            .ok_or(AuthError::Unknown)
    }
}

/// The key of `Bearer <key>` (the scheme in any case, RFC 9110).
fn bearer(header: &str) -> Result<&str, AuthError> {
    let (scheme, key) = header.trim().split_once(' ').ok_or(AuthError::Malformed)?;
    let key = key.trim();
    if scheme.eq_ignore_ascii_case("bearer") && token::well_formed(key) {
        Ok(key)
    } else {
        Err(AuthError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bearer_with_a_well_formed_key_is_read() {
        let key = format!("cbk_{}", "A".repeat(43));
        assert_eq!(bearer(&format!("Bearer {key}")), Ok(key.as_str()));
        assert_eq!(bearer(&format!("bearer  {key} ")), Ok(key.as_str()));
        for bad in [
            "Bearer",
            "Basic abc",
            &format!("Token {key}"),
            "Bearer cbk_x",
            "",
        ] {
            assert_eq!(bearer(bad), Err(AuthError::Malformed), "{bad}");
        }
    }
}
