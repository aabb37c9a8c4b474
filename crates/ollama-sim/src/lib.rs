//! `ollama-sim`: a stand-in for Ollama, faithful to its HTTP wire format, with
//! deterministic replies and injectable latency and faults. Tests, benchmarks
//! and a zero-setup local run use it instead of a real model.
//!
//! # Routes
//!
//! Ollama's API (the subset the chatbot uses, in Ollama's exact formats):
//!
//! - `GET`/`HEAD /`: 200 `text/plain` `Ollama is running`.
//! - `GET /api/version`: `{"version":"0.6.2"}`.
//! - `GET /api/tags`: the configured models, with `name`, `model`,
//!   `modified_at`, `size`, `digest` and `details`.
//! - `GET /api/ps`: the models "loaded", i.e. used by a generation (or a
//!   load request) within their `keep_alive` (default 5 minutes), with
//!   `expires_at` and `size_vram` (0: the simulator is a CPU).
//! - `POST /api/show`: a minimal model description.
//! - `POST /api/chat` (`model`, `messages`, `stream` default **true**,
//!   `options`, `format`, `keep_alive`, `tools` accepted and ignored) and
//!   `POST /api/generate` (`model`, `prompt`, `system`, `stream`, `options`,
//!   ...). Streamed answers are `application/x-ndjson`, one object a line:
//!   chat chunks `{"model","created_at","message":{"role":"assistant",
//!   "content":"<token>"},"done":false}`, generate chunks
//!   `{"model","created_at","response":"<token>","done":false}`; the final
//!   object has empty content, `done: true`, `done_reason` (`stop`, or
//!   `length` when `options.num_predict` cut the reply) and
//!   `total_duration`, `load_duration`, `prompt_eval_count`,
//!   `prompt_eval_duration`, `eval_count`, `eval_duration` (nanoseconds and
//!   counts); generate's also has `context`. With `stream: false` one
//!   `application/json` object carries the whole content and the same
//!   figures. `created_at` is RFC 3339 UTC with nanoseconds. Empty `messages`
//!   (or an empty `prompt`) load the model (`done_reason: "load"`), or with
//!   `keep_alive: 0` unload it (`"unload"`), as Ollama does.
//!
//! Errors are `{"error":"..."}`: 400 `missing request body`, 400 with the
//! parser's message for invalid JSON or wrong field types, 400
//! `model is required`, 404 `model '<name>' not found`, 400 for a message role
//! other than `system`, `user`, `assistant` or `tool`, 500
//! `simulated failure` (fault `error_rate`). An error after the stream began
//! is a last NDJSON line `{"error":"simulated failure mid-stream"}` (the
//! status stays 200).
//!
//! The control routes, for tests:
//!
//! - `GET /_sim/config`: the current [`SimConfig`] as JSON;
//!   `PUT /_sim/config`: merges the given fields into it (unknown fields or
//!   invalid values: 400) and returns the result.
//! - `GET /_sim/stats`: [`SimStats`] (requests per endpoint, generations
//!   started and completed, tokens, injected faults);
//!   `DELETE /_sim/stats` zeroes them.
//! - `GET /_sim/requests`: the last [`state::RECENT_REQUESTS`] chat and
//!   generate request bodies, `{"requests":[{"endpoint","body"}]}`.
//!
//! [`chatbot_common::server::ServiceBuilder`] adds `/livez`, `/readyz`,
//! `/metrics` and `/openapi.json`.
//!
//! # The reply rule (a contract tests rely on)
//!
//! The reply to `/api/chat` is a pure function of the configured model name
//! (the one matched, as listed by `/api/tags`), the messages and
//! [`SimConfig::reply_tokens`]:
//!
//! 1. The *target* is the last message whose role is `user` (if there is
//!    none, the last message). Its *earlier messages* are those before it.
//! 2. The text starts `Echo: <target content>. Context: <N> earlier messages`
//!    where N counts the earlier messages whose role is not `system`
//!    (always the word `messages`, even for 0 or 1).
//! 3. If an earlier message has role `user`, the FIRST such one is quoted:
//!    ` (first: "<its content>")`, truncated to its first 60 characters
//!    (Unicode scalar values) with trailing spaces removed. Only that one
//!    is quoted; the other earlier messages are only counted in N.
//! 4. Whitespace in the echoed and quoted contents is normalized first: runs
//!    of whitespace become one space and ends are trimmed (the reply is made
//!    of words).
//! 5. Filler words (lowercase words such as `alpha`, `cobalt`, drawn by a
//!    generator seeded with a stable hash of the model and messages) are
//!    appended until the reply has `reply_tokens` words; a longer text is
//!    not shortened.
//! 6. With a `format` (`"json"` or a schema) the text is wrapped as the JSON
//!    `{"reply":"<text>"}`.
//! 7. `options.num_predict` > 0 keeps only that many tokens (and the final
//!    object then says `done_reason: "length"`).
//!
//! Tokens are the whitespace-separated words of the text, each but the first
//! sent with its leading space, so the streamed contents concatenate to the
//! words joined by single spaces, which is exactly the non-streamed content.
//! `eval_count` is the number of tokens sent; `prompt_eval_count` is the
//! number of words in all input messages plus 4 per message.
//!
//! `/api/generate` applies the same rule (reply and counts) to the messages
//! `[system (if given), user: prompt]`, so its reply is
//! `Echo: <prompt>. Context: 0 earlier messages` followed by filler; its
//! final object's `context` holds deterministic ids of the prompt's and
//! reply's words.
//!
//! [`reply::chat_reply`] and [`reply::generate_reply`] compute the text, for
//! tests that want the exact expectation.
//!
//! Durations: `load_duration` is 850 ms the first time a model is used (or
//! after its `keep_alive` ran out) and 2.5 ms afterwards (reported, not
//! waited); `prompt_eval_duration` is the real time to the first token (at
//! least 0.25 ms per prompt token); `eval_duration` the real time from the
//! first to the last token (at least 1 ms per token); `total_duration` their
//! sum.
//!
//! # Faults and latency
//!
//! See [`SimConfig`]: `first_token_ms` and `slow_start_ms` delay the first
//! token, `tokens_per_sec` paces the rest, `error_rate` fails a
//! deterministic fraction of generation requests with a 500 before any
//! token, `mid_stream_error_after` ends streams with an error line after N
//! tokens (if the reply is shorter, after all its tokens, in place of the
//! final object), and `hang` holds generation requests without an answer
//! (for ever: turning it off only lets new requests through). All waits are
//! tokio timers: no worker is blocked, so other requests (e.g.
//! `/api/version`) keep answering.
//!
//! # Use from Rust tests
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let sim = ollama_sim::spawn(ollama_sim::SimConfig::default()).await?;
//! let base_url = sim.url(); // http://127.0.0.1:<port>
//! sim.sim().update_config(|c| c.hang = true).ok();
//! sim.stop().await;
//! # Ok(()) }
//! ```

pub mod api;
pub mod config;
pub mod models;
pub mod reply;
pub mod state;

use std::io;
use std::net::SocketAddr;

use actix_web::dev::ServerHandle;
use chatbot_common::config::ServerSettings;
use chatbot_common::server::{RunningService, ServiceBuilder};

pub use config::SimConfig;
pub use ollama_wire::OLLAMA_VERSION;
pub use reply::{SimMessage, chat_reply, generate_reply};
pub use state::{RecordedRequest, RequestCounts, Sim, SimStats};

/// The service name used in logs and metrics.
pub const SERVICE_NAME: &str = "ollama-sim";

/// The port Ollama listens on.
pub const DEFAULT_PORT: u16 = 11434;

/// Binds a simulator with `config` where `listen` says (port 0 picks a free
/// one). Run it with [`RunningService::run_until_stopped`].
pub fn build(config: SimConfig, listen: &ServerSettings) -> io::Result<RunningService> {
    config
        .validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    build_with(Sim::new(config), listen)
}

/// Binds a simulator sharing the state `sim`, so the caller can read and
/// change it while it runs.
pub fn build_with(sim: Sim, listen: &ServerSettings) -> io::Result<RunningService> {
    ServiceBuilder::new(SERVICE_NAME, listen)
        .openapi(<api::SimApi as utoipa::OpenApi>::openapi())
        .bind(move |cfg| api::routes(cfg, sim.clone()))
}

/// A simulator running in this process (see [`spawn`]); dropping it stops
/// the server.
pub struct SimServer {
    addr: SocketAddr,
    sim: Sim,
    handle: ServerHandle,
    task: Option<tokio::task::JoinHandle<io::Result<()>>>,
}

/// Starts a simulator on `127.0.0.1` with a free port, in the current tokio
/// runtime, with one worker and no shutdown grace. Note that, like every
/// service, it listens for SIGTERM/SIGINT to stop.
pub async fn spawn(config: SimConfig) -> io::Result<SimServer> {
    let listen = ServerSettings {
        workers: 1,
        shutdown_grace_secs: 0,
        ..ServerSettings::on(0)
    };
    spawn_on(config, &listen).await
}

/// As [`spawn`], listening as `listen` says.
pub async fn spawn_on(config: SimConfig, listen: &ServerSettings) -> io::Result<SimServer> {
    config
        .validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let sim = Sim::new(config);
    let service = build_with(sim.clone(), listen)?;
    let addr = service.addr();
    let handle = service.handle();
    let task = tokio::spawn(service.run_until_stopped());
    Ok(SimServer {
        addr,
        sim,
        handle,
        task: Some(task),
    })
}

impl SimServer {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL, `http://127.0.0.1:<port>`, what Ollama clients take as
    /// host.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The shared state: configuration, counters, recorded requests.
    pub fn sim(&self) -> &Sim {
        &self.sim
    }

    /// Stops the server, dropping open connections, and waits for it.
    pub async fn stop(mut self) {
        self.handle.stop(false).await;
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        if self.task.is_some() {
            // The stop command is sent now; the returned future only waits.
            drop(self.handle.stop(false));
        }
    }
}
