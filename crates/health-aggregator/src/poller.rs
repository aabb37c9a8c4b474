//! The background poll loop and the cached verdict.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chatbot_common::upstream::Upstream;
use chrono::{DateTime, Utc};
use futures::future::join_all;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

/// The state of one service.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatus {
    /// `OK` or `ERROR`.
    pub status: &'static str,
    /// Duration of the check, in milliseconds.
    pub response_time: u64,
    /// Why it failed.
    pub error: Option<String>,
    /// When it was checked.
    pub checked_at: DateTime<Utc>,
}

/// The combined verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// `OK`, or `ERROR` when any service is not ready or nothing was checked yet.
    pub status: &'static str,
    /// When the verdict was computed.
    pub timestamp: DateTime<Utc>,
    /// The aggregator's version.
    pub version: &'static str,
    /// Per service.
    pub services: BTreeMap<String, ServiceStatus>,
}

/// Polls services and keeps the latest verdict.
#[derive(Clone)]
pub struct Poller {
    targets: Arc<Vec<(String, Upstream)>>,
    timeout: Duration,
    latest: Arc<RwLock<Verdict>>,
}

impl Poller {
    /// A poller of `targets`, each check bounded by `timeout`.
    pub fn new(targets: Vec<(String, Upstream)>, timeout: Duration) -> Self {
        let pending = Verdict {
            status: "ERROR",
            timestamp: Utc::now(),
            version: env!("CARGO_PKG_VERSION"),
            services: BTreeMap::new(),
        };
        Self {
            targets: Arc::new(targets),
            timeout,
            latest: Arc::new(RwLock::new(pending)),
        }
    }

    /// The cached verdict.
    pub fn latest(&self) -> Verdict {
        self.latest
            .read()
            .map(|v| v.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    /// Checks everything once, concurrently, and caches the verdict.
    pub async fn poll_once(&self) {
        let results = join_all(
            self.targets
                .iter()
                .map(|(name, upstream)| async move { (name.clone(), self.check(upstream).await) }),
        )
        .await;
        let ok = results.iter().all(|(_, s)| s.error.is_none());
        let verdict = Verdict {
            status: if ok { "OK" } else { "ERROR" },
            timestamp: Utc::now(),
            version: env!("CARGO_PKG_VERSION"),
            services: results.into_iter().collect(),
        };
        if let Ok(mut latest) = self.latest.write() {
            *latest = verdict;
        }
    }

    async fn check(&self, upstream: &Upstream) -> ServiceStatus {
        let started = Instant::now();
        let call = upstream
            .client()
            .get(upstream.url("/readyz"))
            .timeout(self.timeout)
            .send()
            .await;
        let error = match call {
            Ok(r) if r.status().is_success() => None,
            Ok(r) => Some(format!("readyz answered {}", r.status())),
            Err(e) => Some(format!("unreachable: {e}")),
        };
        ServiceStatus {
            status: if error.is_none() { "OK" } else { "ERROR" },
            response_time: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            error,
            checked_at: Utc::now(),
        }
    }

    /// Polls every `interval` until `stop` is cancelled.
    pub async fn run(self, interval: Duration, stop: CancellationToken) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticker.tick() => self.poll_once().await,
            }
        }
    }
}
