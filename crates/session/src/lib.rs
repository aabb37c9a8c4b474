//! The session service: conversation context in Redis.
//!
//! Serves reads, deletes and the active-session count over HTTP for the
//! gateway, and exports `chatbot_active_sessions`. The data layout (and the
//! writes, which chat makes) belong to the [`session_store`] crate; start
//! with [`routes`] for the API.

pub mod metrics;
pub mod routes;

use std::sync::Arc;

use chatbot_common::config::Settings;
use chatbot_common::probe::Redis;
use chatbot_common::server::{RunningService, ServiceBuilder};
use session_store::SessionStore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Builds the service from settings and binds its listener.
pub fn build(settings: &Settings) -> std::io::Result<RunningService> {
    let store =
        SessionStore::connect(&settings.redis, &settings.session).map_err(std::io::Error::other)?;
    let store = Arc::new(store);
    let tasks = TaskTracker::new();
    let stop = CancellationToken::new();
    let meter = chatbot_common::telemetry::init_metrics("session");
    // The count runs on the process's runtime, with connections of its own:
    // requests keep theirs on the HTTP worker (see `server::Inflight`).
    let counting =
        SessionStore::connect(&settings.redis, &settings.session).map_err(std::io::Error::other)?;
    tasks.spawn(metrics::register(&meter, counting, stop.clone()));
    let ready = Redis(store.connection());
    let state = routes::State { store };
    ServiceBuilder::new("session", &settings.session.server)
        .internal(settings.internal.token.as_ref())
        .readiness("redis", ready)
        .openapi(<routes::InternalApi as utoipa::OpenApi>::openapi())
        .tasks(tasks)
        .bind(move |cfg| routes::configure(cfg, state.clone()))
        .map(|service| service.on_stop(stop))
}
