//! The components the aggregator checks, one [`Check`] each.
//!
//! | component | required | how |
//! |---|---|---|
//! | `database` | yes | `SELECT 1` on a pooled PostgreSQL connection |
//! | `redis` | yes | `PING` |
//! | `ollama` | yes | `GET /api/tags` (never a generation); fails when the configured model is missing (with several `ollama.urls`: when no backend has it) |
//! | `ollama-N` | no | with several `ollama.urls`, backend N alone: one down makes the verdict WARN |
//! | `n8n` | no | `GET n8n.health_url`, only when it is set |
//! | `disk` | yes | free space of each `aggregator.disk_paths` entry against the thresholds |
//! | `memory` | yes | `MemAvailable / MemTotal` from `/proc/meminfo` against the thresholds |
//! | each service | yes | its `/readyz` |
//!
//! The probes of PostgreSQL, Redis and HTTP endpoints are
//! [`chatbot_common::probe`]'s, the same ones the services' `/readyz` runs;
//! the disk and memory readings come from [`chatbot_common::system`]. A
//! check only observes; the poller times it, bounds it with the timeout and
//! keeps the result.

use std::path::PathBuf;
use std::sync::Arc;

use chatbot_common::probe::CheckError;
pub use chatbot_common::probe::{Endpoint, Level, Observation, Postgres, Probe, Redis};
pub use chatbot_common::system::Thresholds;
use chatbot_common::system::{available_memory_percent, free_percent};
use futures::future::BoxFuture;
use serde::Deserialize;

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
    /// `GET /api/tags` on the Ollama API.
    pub tags: Endpoint,
    /// `chat.model`.
    pub model: String,
}

impl Ollama {
    async fn tags(&self) -> Result<Tags, CheckError> {
        let response = self.tags.get().await?;
        response
            .json::<Tags>()
            .await
            .map_err(|e| CheckError::Unreadable {
                what: "/api/tags",
                reason: e.to_string(),
            })
    }

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
            match self.tags().await {
                Ok(tags) if self.has_model(&tags) => Observation {
                    output: Some(format!("model '{}' is present", self.model)),
                    ..Observation::pass()
                },
                Ok(_) => Observation::fail(&CheckError::MissingModel(self.model.clone())),
                Err(error) => Observation::fail(&error),
            }
        })
    }
}

/// Several Ollama backends: passes while at least one has the model.
pub struct AnyOllama(pub Vec<Ollama>);

impl Probe for AnyOllama {
    fn run(&self) -> BoxFuture<'_, Observation> {
        Box::pin(async move {
            let seen = futures::future::join_all(self.0.iter().map(|o| o.run())).await;
            let serving = seen.iter().filter(|o| o.level == Level::Pass).count();
            let model = self.0.first().map_or("", |o| o.model.as_str());
            if serving > 0 {
                Observation {
                    output: Some(format!(
                        "{serving} of {} backends serve '{model}'",
                        seen.len()
                    )),
                    ..Observation::pass()
                }
            } else {
                seen.into_iter().next().unwrap_or_else(Observation::pass)
            }
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
                    Err(reason) => return Observation::fail(&CheckError::Host(reason)),
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
                Err(reason) => Observation::fail(&CheckError::Host(reason)),
            }
        })
    }
}
