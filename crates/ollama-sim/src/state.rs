//! The state shared by every request: configuration, counters, loaded models.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::config::SimConfig;
use ollama_wire::{KeepAlive, canonical};

/// How many recent generation requests [`Sim::recent_requests`] keeps.
pub const RECENT_REQUESTS: usize = 64;

/// `load_duration` reported by the first request that loads a model, in ns.
pub const COLD_LOAD_NS: u64 = 850_000_000;

/// `load_duration` reported when the model is already loaded, in ns.
pub const WARM_LOAD_NS: u64 = 2_500_000;

/// Requests counted per endpoint (every request, whatever its outcome).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RequestCounts {
    /// `GET`/`HEAD /`.
    pub root: u64,
    /// `GET /api/version`.
    pub version: u64,
    /// `GET /api/tags`.
    pub tags: u64,
    /// `GET /api/ps`.
    pub ps: u64,
    /// `POST /api/show`.
    pub show: u64,
    /// `POST /api/chat`.
    pub chat: u64,
    /// `POST /api/generate`.
    pub generate: u64,
}

/// Counters served at `GET /_sim/stats` (and reset by `DELETE /_sim/stats`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SimStats {
    /// Requests per endpoint.
    pub requests: RequestCounts,
    /// Generations that passed validation and fault injection and started
    /// producing tokens (chat and generate; model loads not included).
    pub generations_started: u64,
    /// Generations whose final `done: true` object was sent.
    pub generations_completed: u64,
    /// Started generations per model (the configured name).
    pub generations_by_model: BTreeMap<String, u64>,
    /// Content tokens sent.
    pub tokens_emitted: u64,
    /// Requests answered with the injected 500 (`error_rate`).
    pub injected_errors: u64,
    /// Generations ended by the injected mid-stream error.
    pub mid_stream_errors: u64,
    /// Requests that were held by `hang`.
    pub hung_requests: u64,
}

/// One recorded generation request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// `chat` or `generate`.
    pub endpoint: String,
    /// The request body as received (parsed JSON).
    pub body: serde_json::Value,
}

#[derive(Debug, Clone)]
pub(crate) struct Loaded {
    pub(crate) name: String,
    pub(crate) expires_at: DateTime<Utc>,
}

#[derive(Debug, Default)]
struct Inner {
    stats: SimStats,
    recent: VecDeque<RecordedRequest>,
    loaded: HashMap<String, Loaded>,
    fault_counter: u64,
}

/// A handle on a simulator's state: cheap to clone, shared with its server.
///
/// Tests in the same process can read and change the simulator through it
/// instead of the `/_sim/*` routes.
#[derive(Clone)]
pub struct Sim {
    config: Arc<watch::Sender<SimConfig>>,
    inner: Arc<Mutex<Inner>>,
}

impl Default for Sim {
    fn default() -> Self {
        Self::new(SimConfig::default())
    }
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("config", &self.config())
            .finish()
    }
}

impl Sim {
    /// A simulator state starting with `config`.
    pub fn new(config: SimConfig) -> Self {
        let (tx, _) = watch::channel(config);
        Self {
            config: Arc::new(tx),
            inner: Arc::new(Mutex::new(Inner::default())),
        }
    }

    /// The current configuration.
    pub fn config(&self) -> SimConfig {
        self.config.borrow().clone()
    }

    /// Replaces the configuration (after [`SimConfig::validate`]); also
    /// restarts the `error_rate` sequence.
    pub fn set_config(&self, config: SimConfig) -> Result<(), String> {
        config.validate()?;
        self.lock().fault_counter = 0;
        self.config.send_replace(config);
        Ok(())
    }

    /// Changes the configuration with `change`, as [`Sim::set_config`].
    pub fn update_config(&self, change: impl FnOnce(&mut SimConfig)) -> Result<SimConfig, String> {
        let mut config = self.config();
        change(&mut config);
        self.set_config(config.clone())?;
        Ok(config)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> SimStats {
        self.lock().stats.clone()
    }

    /// Zeroes the counters and forgets the recorded requests.
    pub fn reset_stats(&self) {
        let mut inner = self.lock();
        inner.stats = SimStats::default();
        inner.recent.clear();
    }

    /// The last [`RECENT_REQUESTS`] chat and generate request bodies that
    /// parsed, oldest first.
    pub fn recent_requests(&self) -> Vec<RecordedRequest> {
        self.lock().recent.iter().cloned().collect()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn with_stats(&self, change: impl FnOnce(&mut SimStats)) {
        change(&mut self.lock().stats);
    }

    pub(crate) fn record(&self, endpoint: &str, body: &serde_json::Value) {
        let mut inner = self.lock();
        if inner.recent.len() >= RECENT_REQUESTS {
            inner.recent.pop_front();
        }
        inner.recent.push_back(RecordedRequest {
            endpoint: endpoint.to_owned(),
            body: body.clone(),
        });
    }

    /// Whether the next generation request gets the injected 500.
    pub(crate) fn next_request_fails(&self, rate: f64) -> bool {
        let mut inner = self.lock();
        inner.fault_counter += 1;
        let k = inner.fault_counter as f64;
        let fails = (k * rate).floor() > ((k - 1.0) * rate).floor();
        if fails {
            inner.stats.injected_errors += 1;
        }
        fails
    }

    /// Marks `name` as used now and returns the `load_duration` to report.
    pub(crate) fn touch_model(&self, name: &str, keep_alive: KeepAlive) -> u64 {
        let now = Utc::now();
        let key = canonical(name);
        let mut inner = self.lock();
        let warm = inner.loaded.get(&key).is_some_and(|l| l.expires_at > now);
        match keep_alive {
            KeepAlive::Unload => {
                inner.loaded.remove(&key);
            }
            KeepAlive::For(d) => {
                inner.loaded.insert(
                    key,
                    Loaded {
                        name: name.to_owned(),
                        expires_at: now + d,
                    },
                );
            }
            KeepAlive::Forever => {
                inner.loaded.insert(
                    key,
                    Loaded {
                        name: name.to_owned(),
                        expires_at: now + chrono::Duration::days(365 * 100),
                    },
                );
            }
        }
        if warm { WARM_LOAD_NS } else { COLD_LOAD_NS }
    }

    /// Forgets that `name` is loaded.
    pub(crate) fn unload(&self, name: &str) {
        self.lock().loaded.remove(&canonical(name));
    }

    /// The loaded, not yet expired, models, longest remaining first.
    pub(crate) fn loaded(&self) -> Vec<Loaded> {
        let now = Utc::now();
        let mut list: Vec<Loaded> = self
            .lock()
            .loaded
            .values()
            .filter(|l| l.expires_at > now)
            .cloned()
            .collect();
        list.sort_by_key(|l| std::cmp::Reverse(l.expires_at));
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failures(rate: f64, n: usize) -> Vec<bool> {
        let sim = Sim::default();
        (0..n).map(|_| sim.next_request_fails(rate)).collect()
    }

    #[test]
    fn error_rate_is_an_even_deterministic_sequence() {
        assert_eq!(failures(1.0, 3), vec![true, true, true]);
        assert_eq!(failures(0.0, 3), vec![false, false, false]);
        assert_eq!(failures(0.5, 4), vec![false, true, false, true]);
        assert_eq!(failures(0.25, 4), vec![false, false, false, true]);
    }

    #[test]
    fn first_use_is_a_cold_load() {
        let sim = Sim::default();
        assert_eq!(
            sim.touch_model("llama3.2:1b", ollama_wire::DEFAULT_KEEP_ALIVE),
            COLD_LOAD_NS
        );
        assert_eq!(
            sim.touch_model("llama3.2:1b", ollama_wire::DEFAULT_KEEP_ALIVE),
            WARM_LOAD_NS
        );
        assert_eq!(sim.loaded().len(), 1);
        sim.unload("llama3.2:1b");
        assert!(sim.loaded().is_empty());
    }
}
