//! `local-llm`: a small real model served over Ollama's HTTP API, so that a
//! machine without Ollama gets real answers: the first run, demos, offline
//! installs. Production points the chatbot at a real Ollama instead.
//!
//! # What it serves
//!
//! The routes and wire formats of Ollama that the simulator serves too (one
//! definition of them: the `ollama-wire` crate): `GET`/`HEAD /`,
//! `/api/version`, `/api/tags`, `/api/ps`, `POST /api/show`, `/api/chat` and
//! `/api/generate`, streamed as NDJSON (the default) or as one object, with
//! Ollama's errors (`{"error": "..."}`: 400 for a bad body, option or role,
//! 404 for another model, 503 `server busy, please try again.  maximum
//! pending requests exceeded` when the queue is full). `/livez`, `/readyz`
//! (the inference thread runs), `/metrics` and `/openapi.json` come from
//! [`chatbot_common::server::ServiceBuilder`].
//!
//! # How it generates
//!
//! In-process inference through `llama-cpp-2` (llama.cpp, vendored): the
//! tokenizer and chat template are the GGUF file's own. See [`engine`] for
//! scheduling (one generation at a time, a bounded queue, a hung-up client
//! stops its generation), [`options`] for the `options` honoured, [`prompt`]
//! for how a prompt longer than the context is cut (oldest turns first,
//! never an error), [`text`] for stop sequences, [`model_file`] for the
//! checks of the file, and [`metrics`] for the instruments.
//!
//! The figures of the last object are real: `prompt_eval_count` and
//! `eval_count` are tokens, `prompt_eval_duration` and `eval_duration` the
//! time spent reading the prompt and generating, `load_duration` the time
//! the request waited for the model (it is loaded once, at start), and
//! `total_duration` the time from the request's arrival to the end.

pub mod api;
pub mod engine;
pub mod metrics;
pub mod model_file;
pub mod options;
pub mod prompt;
pub mod queue;
pub mod text;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use chatbot_common::config::ServerSettings;
use chatbot_common::probe::{CheckError, probe_fn};
use chatbot_common::server::{RunningService, ServiceBuilder};
use chrono::{DateTime, Utc};

use crate::engine::{Engine, EngineError, EngineSettings};
use crate::model_file::{DEFAULT_MODEL_SHA256, ModelFile, ModelFileError};

/// The service name used in logs and metrics.
pub const SERVICE_NAME: &str = "local-llm";

/// The name the default model is served under (Ollama's name for it).
pub const DEFAULT_MODEL_NAME: &str = "smollm2:135m";

/// The default model's file name in the cache.
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// Where `scripts/fetch-model.sh` puts the default model:
/// `$XDG_CACHE_HOME/chatbot/models` (or `~/.cache/chatbot/models`).
pub fn default_model_path() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/var/cache"));
    cache.join("chatbot/models").join(DEFAULT_MODEL_FILE)
}

/// Everything the service needs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The GGUF file.
    pub model: PathBuf,
    /// The digest it must have; `None` checks nothing (any model file).
    pub model_sha256: Option<String>,
    /// The name it is served under.
    pub model_name: String,
    /// How the engine runs.
    pub engine: EngineSettings,
    /// Where it listens.
    pub listen: ServerSettings,
}

impl Settings {
    /// The digest to check when none is configured: the default model's,
    /// when the default file is used.
    pub fn expected_sha256(model: &Path, configured: Option<String>) -> Option<String> {
        match configured {
            Some(digest) if digest.is_empty() => None,
            Some(digest) => Some(digest),
            None if model.file_name() == Some(DEFAULT_MODEL_FILE.as_ref()) => {
                Some(DEFAULT_MODEL_SHA256.to_owned())
            }
            None => None,
        }
    }
}

/// Why the service could not start: each is one line for the operator.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The model file.
    #[error(transparent)]
    ModelFile(#[from] ModelFileError),
    /// Loading it.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The listener.
    #[error("could not listen: {0}")]
    Listen(#[from] std::io::Error),
}

/// The cores of this machine (at least one).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The threads generating tokens by default: all cores but one (which the
/// HTTP side and the rest of the stack need), at least one.
pub fn default_threads() -> usize {
    cores().saturating_sub(1).max(1)
}

/// Checks the model file, loads it and binds the server.
pub fn start(settings: Settings) -> Result<RunningService, StartError> {
    let file = ModelFile::check(&settings.model, settings.model_sha256.as_deref())?;
    let modified_at = std::fs::metadata(&file.path)
        .and_then(|m| m.modified())
        .map_or_else(|_| Utc::now(), DateTime::<Utc>::from);
    let meter = chatbot_common::telemetry::init_metrics(SERVICE_NAME);
    let waiting = Arc::new(AtomicUsize::new(0));
    let metrics = metrics::Metrics::new(&meter, waiting.clone());
    let engine = Engine::start(
        settings.model_name,
        file,
        settings.engine,
        metrics.clone(),
        waiting,
    )?;
    tracing::info!(
        model = %engine.info().name,
        file = %engine.info().file.path.display(),
        parameters = %engine.info().parameter_size,
        quantization = %engine.info().quantization,
        threads = settings.engine.threads,
        threads_batch = settings.engine.threads_batch,
        num_ctx = engine.info().context_default,
        "model loaded"
    );
    let alive = engine.clone();
    let state = api::State {
        engine,
        metrics,
        modified_at,
    };
    let service = ServiceBuilder::new(SERVICE_NAME, &settings.listen)
        .readiness(
            "model",
            probe_fn(move || {
                let alive = alive.is_alive();
                Box::pin(async move {
                    alive.then_some(()).ok_or_else(|| {
                        CheckError::Unreachable("the inference thread stopped".into())
                    })
                })
            }),
        )
        .openapi(<api::LocalLlmApi as utoipa::OpenApi>::openapi())
        .cancel_on_hang_up()
        .bind(move |cfg| api::routes(cfg, state.clone()))?;
    Ok(service)
}
