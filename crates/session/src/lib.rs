//! The session service: conversation context in Redis.
//!
//! A session is a Redis hash (owner, timestamps) plus a list of turns, both
//! expiring after `session.idle_timeout_secs` without activity; the list is
//! trimmed to `session.max_turns`. Active sessions are also members of one
//! sorted set scored by last activity, so counting them is one `ZCOUNT`
//! (O(log n)), never a key scan.
//!
//! Start with [`store::SessionStore`] for the data layout and [`routes`] for
//! the HTTP API the gateway and chat call.

pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod store;

use std::sync::Arc;

use chatbot_common::config::Settings;
use chatbot_common::health::check_fn;
use chatbot_common::server::{RunningService, ServiceBuilder};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Builds the service from settings and binds its listener.
pub fn build(settings: &Settings) -> std::io::Result<RunningService> {
    let store = store::SessionStore::connect(&settings.redis, &settings.session)
        .map_err(std::io::Error::other)?;
    let store = Arc::new(store);
    let ping = store.clone();
    let tasks = TaskTracker::new();
    let stop = CancellationToken::new();
    let meter = chatbot_common::telemetry::init_metrics("session");
    // The count runs on the process's runtime, with connections of its own:
    // requests keep theirs on the HTTP worker (see `server::Inflight`).
    let counting = store::SessionStore::connect(&settings.redis, &settings.session)
        .map_err(std::io::Error::other)?;
    tasks.spawn(metrics::register(
        &meter,
        store.clone(),
        counting,
        stop.clone(),
    ));
    let state = routes::State { store };
    ServiceBuilder::new("session", &settings.session.server)
        .readiness(check_fn("redis", move || {
            let store = ping.clone();
            Box::pin(async move { store.ping().await.map_err(|e| e.to_string()) })
        }))
        .openapi(openapi::document())
        .tasks(tasks)
        .bind(move |cfg| routes::configure(cfg, state.clone()))
        .map(|service| service.on_stop(stop))
}
