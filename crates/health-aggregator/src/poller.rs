//! The background loop: every interval, all checks run concurrently, each
//! bounded by the timeout, and their results replace the cached ones.
//! Requests read the cache only, so no number of `/health` calls adds a
//! single dependency check.
//!
//! Metrics (read from the cache at scrape time):
//! `chatbot_dependency_up{component}` (1 when passing or warning),
//! `chatbot_dependency_check_duration_seconds{component}` and the counter
//! `chatbot_health_checks_total{component}`.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::future::join_all;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Meter};
use tokio_util::sync::CancellationToken;

use crate::checks::{Check, Level, Observation};
use chatbot_common::verdict::Verdict;

use crate::verdict::{Recorded, verdict};

/// Runs the checks and keeps their latest results.
#[derive(Clone)]
pub struct Poller(Arc<Inner>);

struct Inner {
    checks: Vec<Arc<Check>>,
    timeout: Duration,
    stale_after: Duration,
    records: RwLock<BTreeMap<String, Recorded>>,
    runs: Counter<u64>,
}

impl Poller {
    /// A poller of `checks`; each run is bounded by `timeout`, and a result
    /// older than `stale_after` counts as failed.
    pub fn new(
        checks: Vec<Arc<Check>>,
        timeout: Duration,
        stale_after: Duration,
        meter: &Meter,
    ) -> Self {
        let runs = meter
            .u64_counter("chatbot_health_checks")
            .with_description("Dependency checks run by the health aggregator")
            .build();
        let poller = Self(Arc::new(Inner {
            checks,
            timeout,
            stale_after,
            records: RwLock::new(BTreeMap::new()),
            runs,
        }));
        poller.export_gauges(meter);
        poller
    }

    /// The verdict now, from the cached results.
    pub fn verdict(&self) -> Verdict {
        let expected: Vec<_> = self
            .0
            .checks
            .iter()
            .map(|c| (c.name.clone(), c.required, c.kind))
            .collect();
        let records = self.records();
        verdict(&expected, &records, Utc::now(), self.0.stale_after)
    }

    fn records(&self) -> BTreeMap<String, Recorded> {
        self.0
            .records
            .read()
            .map(|r| r.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    /// Runs every check once, concurrently, and caches the results.
    pub async fn poll_once(&self) {
        let results = join_all(self.0.checks.iter().map(|check| self.run(check))).await;
        if let Ok(mut records) = self.0.records.write() {
            records.extend(results);
        }
    }

    async fn run(&self, check: &Check) -> (String, Recorded) {
        let started = Instant::now();
        let observation = tokio::time::timeout(self.0.timeout, check.probe.run())
            .await
            .unwrap_or_else(|_| Observation {
                level: Level::Fail,
                value: None,
                output: Some(format!(
                    "no answer within {} ms",
                    self.0.timeout.as_millis()
                )),
            });
        self.0
            .runs
            .add(1, &[KeyValue::new("component", check.name.clone())]);
        if observation.level == Level::Fail {
            tracing::warn!(component = %check.name, error = ?observation.output, "health check failed");
        }
        let recorded = Recorded {
            observation,
            duration: started.elapsed(),
            checked_at: Utc::now(),
            required: check.required,
            kind: check.kind,
        };
        (check.name.clone(), recorded)
    }

    /// Polls every `interval` until `stop` is cancelled.
    pub async fn run_every(self, interval: Duration, stop: CancellationToken) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticker.tick() => self.poll_once().await,
            }
        }
    }

    fn export_gauges(&self, meter: &Meter) {
        let up = self.clone();
        meter
            .u64_observable_gauge("chatbot_dependency_up")
            .with_description("1 when the component's last check passed or warned")
            .with_callback(move |gauge| {
                for (name, r) in up.records() {
                    let value = u64::from(r.observation.level != Level::Fail);
                    gauge.observe(value, &[KeyValue::new("component", name)]);
                }
            })
            .build();
        let timing = self.clone();
        meter
            .f64_observable_gauge("chatbot_dependency_check_duration")
            .with_unit("s")
            .with_description("Duration of the component's last check")
            .with_callback(move |gauge| {
                for (name, r) in timing.records() {
                    gauge.observe(
                        r.duration.as_secs_f64(),
                        &[KeyValue::new("component", name)],
                    );
                }
            })
            .build();
    }
}
