//! The components the aggregator checks, one [`Check`] each.
//!
//! | component | required | how |
//! |---|---|---|
//! | `database` | yes | `SELECT 1` on a pooled PostgreSQL connection |
//! | `redis` | yes | `PING` |
//! | `ollama` | yes | `GET /api/tags` (never a generation); fails when the configured model is missing |
//! | `n8n` | no | `GET n8n.health_url`, only when it is set |
//! | `disk` | yes | free space of each `aggregator.disk_paths` entry against the thresholds |
//! | `memory` | yes | `MemAvailable / MemTotal` from `/proc/meminfo` against the thresholds |
//! | each service | yes | its `/readyz` |
//!
//! The disk and memory readings come from [`chatbot_common::system`]. A
//! check only observes; the poller times it, bounds it with the timeout and
//! keeps the result.

use std::path::PathBuf;
use std::sync::Arc;

use chatbot_common::error::ErrorChain;
pub use chatbot_common::system::{Level, Thresholds};
use chatbot_common::system::{available_memory_percent, free_percent};
use chatbot_common::upstream::Upstream;
use futures::future::BoxFuture;
use serde::Deserialize;

/// What one run of a check saw.
#[derive(Debug, Clone)]
pub struct Observation {
    /// The outcome.
    pub level: Level,
    /// A measured value (free space, available memory) with its unit; checks
    /// of reachability report their duration instead, added by the poller.
    pub value: Option<(&'static str, f64, &'static str)>,
    /// Why it warned or failed, or a note (the model is present).
    pub output: Option<String>,
}

impl Observation {
    fn pass() -> Self {
        Self {
            level: Level::Pass,
            value: None,
            output: None,
        }
    }

    fn fail(reason: impl Into<String>) -> Self {
        Self {
            level: Level::Fail,
            value: None,
            output: Some(reason.into()),
        }
    }

    fn from_result(result: Result<(), String>) -> Self {
        result.map_or_else(Self::fail, |()| Self::pass())
    }
}

/// How one component is looked at.
pub trait Probe: Send + Sync {
    /// Looks once.
    fn run(&self) -> BoxFuture<'_, Observation>;
}

/// One component: its name in the verdict, whether its failure makes the
/// verdict `ERROR` (else only `WARN`), its health+json `componentType`, and
/// how to look at it.
pub struct Check {
    /// Component name, the key in the verdict.
    pub name: String,
    /// Required or optional.
    pub required: bool,
    /// The health+json `componentType`.
    pub kind: &'static str,
    /// The probe.
    pub probe: Box<dyn Probe>,
}

impl Check {
    /// A component checked by `probe`.
    pub fn new(
        name: impl Into<String>,
        required: bool,
        kind: &'static str,
        probe: impl Probe + 'static,
    ) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            required,
            kind,
            probe: Box::new(probe),
        })
    }
}

/// PostgreSQL: `SELECT 1`.
pub struct Database(pub deadpool_postgres::Pool);

impl Probe for Database {
    fn run(&self) -> BoxFuture<'_, Observation> {
        Box::pin(async move {
            let result = async {
                let client = self.0.get().await.map_err(|e| ErrorChain(&e).to_string())?;
                client
                    .execute("SELECT 1", &[])
                    .await
                    .map_err(|e| ErrorChain(&e).to_string())
            };
            Observation::from_result(result.await.map(|_| ()))
        })
    }
}

/// Redis: `PING`.
pub struct Redis(pub deadpool_redis::Pool);

impl Probe for Redis {
    fn run(&self) -> BoxFuture<'_, Observation> {
        Box::pin(async move {
            let result = async {
                let mut conn = self.0.get().await.map_err(|e| ErrorChain(&e).to_string())?;
                deadpool_redis::redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .map_err(|e| ErrorChain(&e).to_string())
            };
            Observation::from_result(result.await.map(|_| ()))
        })
    }
}

#[derive(Deserialize)]
struct Tags {
    models: Vec<TaggedModel>,
}

#[derive(Deserialize)]
struct TaggedModel {
    name: String,
}

/// Ollama: `GET /api/tags`, and whether the configured model is there.
pub struct Ollama {
    /// The Ollama API.
    pub upstream: Upstream,
    /// `chat.model`.
    pub model: String,
}

impl Ollama {
    fn has_model(&self, tags: &Tags) -> bool {
        let wanted = if self.model.contains(':') {
            self.model.clone()
        } else {
            format!("{}:latest", self.model)
        };
        tags.models
            .iter()
            .any(|m| m.name == wanted || m.name == self.model)
    }
}

impl Probe for Ollama {
    fn run(&self) -> BoxFuture<'_, Observation> {
        Box::pin(async move {
            let response = match self.upstream.get("/api/tags").send().await {
                Ok(r) if r.status().is_success() => r,
                Ok(r) => return Observation::fail(format!("/api/tags answered {}", r.status())),
                Err(e) => return Observation::fail(format!("unreachable: {}", ErrorChain(&e))),
            };
            match response.json::<Tags>().await {
                Ok(tags) if self.has_model(&tags) => Observation {
                    output: Some(format!("model '{}' is present", self.model)),
                    ..Observation::pass()
                },
                Ok(_) => Observation::fail(format!(
                    "model '{}' is not available; pull it with `ollama pull {}`",
                    self.model, self.model
                )),
                Err(e) => Observation::fail(format!("unreadable /api/tags: {e}")),
            }
        })
    }
}

/// An HTTP endpoint that answers 2xx when healthy: a service's `/readyz`, or
/// n8n's health URL.
pub struct Endpoint {
    /// Whose endpoint.
    pub upstream: Upstream,
    /// The path to `GET`.
    pub path: &'static str,
}

impl Probe for Endpoint {
    fn run(&self) -> BoxFuture<'_, Observation> {
        Box::pin(async move {
            Observation::from_result(match self.upstream.get(self.path).send().await {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(format!("{} answered {}", self.path, r.status())),
                Err(e) => Err(format!("unreachable: {}", ErrorChain(&e))),
            })
        })
    }
}

/// Free space of filesystems.
pub struct Disk {
    /// Paths on the filesystems to watch.
    pub paths: Vec<PathBuf>,
    /// Free-space thresholds.
    pub thresholds: Thresholds,
}

impl Probe for Disk {
    fn run(&self) -> BoxFuture<'_, Observation> {
        Box::pin(async move {
            let mut worst: Option<(f64, String)> = None;
            for path in &self.paths {
                match free_percent(path) {
                    Ok(free) if worst.as_ref().is_none_or(|(w, _)| free < *w) => {
                        worst = Some((free, path.display().to_string()));
                    }
                    Ok(_) => {}
                    Err(reason) => return Observation::fail(reason),
                }
            }
            let Some((free, path)) = worst else {
                return Observation::pass();
            };
            let level = self.thresholds.level(free);
            Observation {
                level,
                value: Some(("free", free, "percent")),
                output: (level != Level::Pass).then(|| format!("{path} has {free:.1}% free")),
            }
        })
    }
}

/// Available memory.
pub struct Memory {
    /// Available-memory thresholds.
    pub thresholds: Thresholds,
}

impl Probe for Memory {
    fn run(&self) -> BoxFuture<'_, Observation> {
        Box::pin(async move {
            match available_memory_percent() {
                Ok(available) => {
                    let level = self.thresholds.level(available);
                    Observation {
                        level,
                        value: Some(("available", available, "percent")),
                        output: (level != Level::Pass)
                            .then(|| format!("{available:.1}% of memory available")),
                    }
                }
                Err(reason) => Observation::fail(reason),
            }
        })
    }
}
