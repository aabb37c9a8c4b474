//! Several Ollama backends: balancing, a breaker each, and their health.
//!
//! `ollama.urls` lists one or more Ollama servers (`ollama.url` alone is one).
//! Each exchange goes to the backend with the fewest calls outstanding among
//! those that may serve it: its breaker lets calls through, and it has the
//! model (as its `GET /api/tags` said at the last look, every
//! [`TAGS_EVERY`]; a backend not yet looked at counts as having it).
//!
//! **The breaker.** After [`Breaker::THRESHOLD`] failures in a row (a
//! connection refused or timed out, a 5xx, no first token in time, a reply
//! cut off), a backend is skipped for [`Breaker::COOL_DOWN`]; then one
//! request probes it: success closes the breaker, failure opens it again.
//! Opening and closing are logged at ERROR, once each.
//!
//! **Failing fast.** When no backend can serve, the call fails at once with
//! [`LlmError::NoBackend`] (503 `llm_unavailable`, `Retry-After` the time
//! until the next probe), not after the first-token timeout. A connection
//! that cannot be made is retried on another backend within the same
//! first-token budget; nothing is retried once the request reached a
//! backend.
//!
//! Metrics, labelled by `backend` (its 1-based position in `ollama.urls`,
//! a bounded set): `chatbot_llm_backend_up` (1 while its breaker lets calls
//! through), `chatbot_llm_backend_outstanding`,
//! `chatbot_llm_backend_calls_total{backend, outcome}` (`ok`, `failed`).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use chatbot_common::api::Catalog;
use chatbot_common::probe::{CheckError, Endpoint};
use chatbot_common::upstream::Upstream;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Meter};
use serde::Deserialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::llm::{LlmClient, LlmError, LlmOutcome, Prompt};

/// How often each backend's models are looked at.
pub const TAGS_EVERY: Duration = Duration::from_secs(10);

/// One backend's breaker.
#[derive(Debug, Default)]
pub struct Breaker {
    state: Mutex<BreakerState>,
}

#[derive(Debug, Default, Clone, Copy)]
enum BreakerState {
    #[default]
    Closed,
    Failing(u32),
    Open {
        until: Instant,
    },
    Probing,
}

/// Whether a call may go to a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The breaker is closed.
    Normal,
    /// The breaker is half open: this call is its one probe.
    Probe,
}

/// What a breaker's change means, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// It opened: the backend is skipped.
    Opened,
    /// It closed: the backend serves again.
    Closed,
}

impl Breaker {
    /// Failures in a row that open the breaker.
    pub const THRESHOLD: u32 = 3;
    /// How long an open breaker skips its backend.
    pub const COOL_DOWN: Duration = Duration::from_secs(5);

    /// Whether a call may go through now (taking the probe when half open).
    pub fn admit(&self, now: Instant) -> Option<Admission> {
        let mut state = self.lock();
        match *state {
            BreakerState::Closed | BreakerState::Failing(_) => Some(Admission::Normal),
            BreakerState::Open { until } if now >= until => {
                *state = BreakerState::Probing;
                Some(Admission::Probe)
            }
            BreakerState::Open { .. } | BreakerState::Probing => None,
        }
    }

    /// Whether calls would go through now, without taking anything.
    pub fn is_closed(&self, now: Instant) -> bool {
        match *self.lock() {
            BreakerState::Closed | BreakerState::Failing(_) => true,
            BreakerState::Open { until } => now >= until,
            BreakerState::Probing => false,
        }
    }

    /// When an open breaker lets its probe through.
    pub fn opens_at(&self) -> Option<Instant> {
        match *self.lock() {
            BreakerState::Open { until } => Some(until),
            _ => None,
        }
    }

    /// A call succeeded.
    pub fn success(&self) -> Option<Transition> {
        let mut state = self.lock();
        let was_open = matches!(*state, BreakerState::Open { .. } | BreakerState::Probing);
        *state = BreakerState::Closed;
        was_open.then_some(Transition::Closed)
    }

    /// A call failed because of the backend.
    pub fn failure(&self, now: Instant) -> Option<Transition> {
        let mut state = self.lock();
        let open = BreakerState::Open {
            until: now + Self::COOL_DOWN,
        };
        match *state {
            BreakerState::Closed => {
                *state = BreakerState::Failing(1);
                None
            }
            BreakerState::Failing(n) if n + 1 >= Self::THRESHOLD => {
                *state = open;
                Some(Transition::Opened)
            }
            BreakerState::Failing(n) => {
                *state = BreakerState::Failing(n + 1);
                None
            }
            BreakerState::Probing | BreakerState::Open { .. } => {
                *state = open;
                None
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BreakerState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One Ollama server.
pub struct Backend {
    /// Its label: 1-based position in `ollama.urls`.
    pub label: String,
    /// Its base URL (for logs and the verdict).
    pub url: String,
    client: LlmClient,
    tags: Endpoint,
    version: Endpoint,
    outstanding: AtomicUsize,
    breaker: Breaker,
    /// What it had at the last look (`None`: not looked at yet).
    catalog: RwLock<Option<Catalog>>,
    /// Whether the last look or call reached it.
    reachable: AtomicBool,
}

impl Backend {
    /// Reachable, and its breaker lets calls through.
    fn serves(&self, now: Instant) -> bool {
        self.reachable.load(Ordering::Relaxed) && self.breaker.is_closed(now)
    }

    fn has_model(&self, model: &str) -> bool {
        self.catalog
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_none_or(|catalog| catalog.has(model))
    }

    fn log(&self, transition: Option<Transition>) {
        match transition {
            Some(Transition::Opened) => tracing::error!(backend = %self.label, url = %self.url,
                "LLM backend failing: skipped for {:?} at a time until a probe succeeds",
                Breaker::COOL_DOWN),
            Some(Transition::Closed) => tracing::error!(backend = %self.label, url = %self.url,
                "LLM backend recovered: serving again"),
            None => {}
        }
    }
}

/// Every backend, and the instruments about them.
pub struct Backends {
    list: Vec<Arc<Backend>>,
    model: String,
    next: AtomicUsize,
    calls: Counter<u64>,
}

#[derive(Deserialize)]
struct Tags {
    #[serde(default)]
    models: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct Version {
    version: String,
}

/// A call holding its backend's outstanding count.
struct Outstanding<'a>(&'a Backend);

impl Drop for Outstanding<'_> {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Backends {
    /// One backend per upstream in `upstreams`, each calling `model` through
    /// `client(upstream)`.
    pub fn new(
        upstreams: Vec<Upstream>,
        model: &str,
        client: impl Fn(Upstream) -> LlmClient,
        meter: &Meter,
    ) -> Arc<Self> {
        let list: Vec<Arc<Backend>> = upstreams
            .into_iter()
            .enumerate()
            .map(|(i, upstream)| {
                Arc::new(Backend {
                    label: (i + 1).to_string(),
                    url: upstream.url(""),
                    tags: Endpoint::new(upstream.clone(), "/api/tags"),
                    version: Endpoint::new(upstream.clone(), "/api/version"),
                    client: client(upstream),
                    outstanding: AtomicUsize::new(0),
                    breaker: Breaker::default(),
                    catalog: RwLock::new(None),
                    reachable: AtomicBool::new(true),
                })
            })
            .collect();
        let backends = Arc::new(Self {
            list,
            model: model.to_owned(),
            next: AtomicUsize::new(0),
            calls: meter
                .u64_counter("chatbot_llm_backend_calls")
                .with_description("LLM calls per backend, by outcome")
                .build(),
        });
        backends.export(meter);
        backends
    }

    fn export(self: &Arc<Self>, meter: &Meter) {
        self.gauge(
            meter,
            "chatbot_llm_backend_up",
            "1 while the backend's breaker lets calls through",
            |this, b, now| u64::from(b.serves(now) && b.has_model(&this.model)),
        );
        self.gauge(
            meter,
            "chatbot_llm_backend_outstanding",
            "LLM calls in progress per backend",
            |_, b, _| b.outstanding.load(Ordering::Relaxed) as u64,
        );
    }

    /// A gauge with one value per backend, read at each scrape.
    fn gauge(
        self: &Arc<Self>,
        meter: &Meter,
        name: &'static str,
        help: &'static str,
        value: fn(&Self, &Backend, Instant) -> u64,
    ) {
        let this = Arc::downgrade(self);
        meter
            .u64_observable_gauge(name)
            .with_description(help)
            .with_callback(move |gauge| {
                let Some(this) = this.upgrade() else { return };
                let now = Instant::now();
                for b in &this.list {
                    let backend = [KeyValue::new("backend", b.label.clone())];
                    gauge.observe(value(&this, b, now), &backend);
                }
            })
            .build();
    }

    /// The backends.
    pub fn list(&self) -> &[Arc<Backend>] {
        &self.list
    }

    /// The model a call asks for unless it names one (`chat.model`).
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Whether some backend may have `model`: one listed it, or one has not
    /// been looked at yet.
    pub fn offers(&self, model: &str) -> bool {
        self.list.iter().any(|b| b.has_model(model))
    }

    /// What the backends serve, merged, as they said at the last look.
    pub fn catalog(&self) -> Catalog {
        let mut all = Catalog::default();
        for backend in &self.list {
            let catalog = backend
                .catalog
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(catalog) = catalog.as_ref() {
                all.merge(catalog);
            }
        }
        all
    }

    /// Readiness: some backend is reachable and its breaker lets calls
    /// through.
    pub fn ready(&self) -> Result<(), CheckError> {
        let now = Instant::now();
        if self.list.iter().any(|b| b.serves(now)) {
            Ok(())
        } else {
            Err(CheckError::Unreachable(
                "no LLM backend can take calls now (unreachable or failing)".into(),
            ))
        }
    }

    /// The backend for the next call, not one of `tried`, with the fewest
    /// calls outstanding among those whose breaker lets it through: those
    /// with the model first; when none has it, any (so the client gets the
    /// backend's own "model not found"). `None` when none may serve.
    fn pick(&self, model: &str, tried: &[usize]) -> Option<(usize, Admission)> {
        let now = Instant::now();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.list.len();
        let mut candidates: Vec<(bool, usize, usize)> = (0..n)
            .map(|i| (start + i) % n)
            .filter(|i| !tried.contains(i) && self.list[*i].breaker.is_closed(now))
            .map(|i| {
                let b = &self.list[i];
                let lacks = !b.has_model(model);
                (lacks, b.outstanding.load(Ordering::Relaxed), i)
            })
            .collect();
        candidates.sort_by_key(|&(lacks, outstanding, _)| (lacks, outstanding));
        candidates
            .into_iter()
            .find_map(|(_, _, i)| self.list[i].breaker.admit(now).map(|a| (i, a)))
    }

    /// How long until some backend's breaker lets a probe through.
    fn retry_after(&self) -> Duration {
        let now = Instant::now();
        self.list
            .iter()
            .filter_map(|b| b.breaker.opens_at())
            .map(|at| at.saturating_duration_since(now))
            .min()
            .unwrap_or(Breaker::COOL_DOWN)
            .max(Duration::from_secs(1))
    }

    /// One chat call on the best backend, retried on another when the
    /// connection cannot be made, all within the first-token budget from
    /// `started`.
    pub async fn chat(
        &self,
        prompt: Prompt<'_>,
        mut on_token: impl FnMut(&str),
        started: Instant,
    ) -> Result<LlmOutcome, LlmError> {
        let mut tried = Vec::new();
        let mut last_error = None;
        while let Some((i, _)) = self.pick(prompt.model, &tried) {
            tried.push(i);
            let backend = &self.list[i];
            backend.outstanding.fetch_add(1, Ordering::Relaxed);
            let held = Outstanding(backend);
            let result = backend.client.call(prompt, &mut on_token, started).await;
            drop(held);
            let label = KeyValue::new("backend", backend.label.clone());
            match result {
                Ok(outcome) => {
                    backend.reachable.store(true, Ordering::Relaxed);
                    backend.log(backend.breaker.success());
                    self.calls.add(1, &[label, KeyValue::new("outcome", "ok")]);
                    return Ok(outcome);
                }
                Err(error) => {
                    self.calls
                        .add(1, &[label, KeyValue::new("outcome", "failed")]);
                    let reached = !matches!(error, LlmError::Unreachable(_));
                    backend.reachable.store(reached, Ordering::Relaxed);
                    if error.is_backend_failure() {
                        backend.log(backend.breaker.failure(Instant::now()));
                    } else {
                        backend.log(backend.breaker.success());
                    }
                    if !error.may_retry_elsewhere() {
                        return Err(error);
                    }
                    last_error = Some(error);
                }
            }
        }
        Err(last_error.unwrap_or(LlmError::NoBackend {
            model: prompt.model.to_owned(),
            retry_after: self.retry_after(),
        }))
    }

    /// Looks at each backend's models every [`TAGS_EVERY`] until `stop`; a
    /// backend that does not answer counts one failure on its breaker.
    pub async fn watch(self: Arc<Self>, stop: CancellationToken) {
        let mut ticks = tokio::time::interval(TAGS_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticks.tick() => {
                    futures::future::join_all(self.list.iter().map(|b| self.look_at(b))).await;
                }
            }
        }
    }

    async fn look_at(&self, backend: &Backend) {
        let (tags, version) = tokio::join!(backend.tags.get(), backend.version.get());
        let tags = match tags {
            Ok(response) => response.json::<Tags>().await.ok(),
            Err(_) => None,
        };
        let version = match version {
            Ok(response) => response.json::<Version>().await.ok(),
            Err(_) => None,
        };
        backend.reachable.store(tags.is_some(), Ordering::Relaxed);
        match tags {
            Some(tags) => {
                let catalog = Catalog {
                    version: version.map(|v| v.version),
                    models: tags.models,
                };
                *backend
                    .catalog
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = Some(catalog);
            }
            None if backend.breaker.is_closed(Instant::now()) => {
                backend.log(backend.breaker.failure(Instant::now()));
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_opens_after_failures_in_a_row_and_one_probe_closes_it() {
        let breaker = Breaker::default();
        let now = Instant::now();
        assert_eq!(breaker.failure(now), None);
        assert_eq!(breaker.success(), None, "a success resets the run");
        for _ in 1..Breaker::THRESHOLD {
            assert_eq!(breaker.failure(now), None);
        }
        assert_eq!(breaker.failure(now), Some(Transition::Opened));
        assert_eq!(breaker.admit(now), None, "open: skipped");
        let later = now + Breaker::COOL_DOWN;
        assert_eq!(breaker.admit(later), Some(Admission::Probe));
        assert_eq!(breaker.admit(later), None, "one probe at a time");
        assert_eq!(
            breaker.failure(later),
            None,
            "a failed probe opens it again"
        );
        assert_eq!(breaker.admit(later), None);
        let after = later + Breaker::COOL_DOWN;
        assert_eq!(breaker.admit(after), Some(Admission::Probe));
        assert_eq!(breaker.success(), Some(Transition::Closed));
        assert_eq!(breaker.admit(after), Some(Admission::Normal));
    }
}
