//! The public gateway (port 3001).
//!
//! It owns the public API: it reads and validates every request (body limit,
//! JSON, fields) so that bad input never travels further, then forwards it to
//! the chat or session service over pooled keep-alive connections and relays
//! the answer, streams included. Start with [`routes`].

pub mod access;
pub mod cors;
pub mod health;
pub mod overhead;
pub mod routes;

use std::sync::Arc;
use std::time::Duration;

use ::access::{KeyCache, KeyStore, Limiter, StreamSlots};
use actix_web::web;
use chatbot_common::config::Settings;
use chatbot_common::pools;
use chatbot_common::probe::{CheckError, Endpoint, probe_fn};
use chatbot_common::server::{RunningService, ServiceBuilder};
use chatbot_common::upstream::{Upstream, internal_client};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Builds the gateway and binds its listener.
pub fn build(settings: &Settings) -> std::io::Result<RunningService> {
    let gw = &settings.gateway;
    let meter = chatbot_common::telemetry::init_metrics("gateway");
    let tasks = TaskTracker::new();
    let stop = CancellationToken::new();
    let access = access_control(settings, &meter, &tasks, &stop)?;
    // chat, session and the aggregator are internal: every call carries the token.
    let client = internal_client(Duration::from_secs(2), settings.internal.token.as_ref());
    let state = Arc::new(routes::State {
        chat: Upstream::spread("chat", &gw.chat_url, client.clone()),
        session: Upstream::spread("session", &gw.session_url, client.clone()),
        health: health::HealthRelay::new(
            Upstream::new("health-aggregator", &gw.aggregator_url, client),
            gw.health_details,
            Duration::from_millis(gw.health_cache_ms),
        ),
        overhead: overhead::Overhead::new(&meter),
        max_body_bytes: gw.max_body_bytes,
        max_message_chars: settings.chat.max_message_chars,
        upstream_timeout: Duration::from_secs(gw.upstream_timeout_secs),
    });
    let mut service = ServiceBuilder::new("gateway", &gw.server)
        .readiness("chat", Endpoint::new(state.chat.clone(), "/livez"))
        .readiness("session", Endpoint::new(state.session.clone(), "/livez"));
    if let Some((_, keys)) = &access {
        let keys = keys.clone();
        service = service.readiness(
            "api_keys",
            probe_fn(move || {
                let loaded = keys.is_loaded();
                Box::pin(async move {
                    loaded.then_some(()).ok_or_else(|| {
                        CheckError::Unreachable("the API keys are not loaded yet".into())
                    })
                })
            }),
        );
    }
    let access = access.map(|(access, _)| web::Data::new(access));
    cors::validate(&gw.cors)?;
    let cors = gw.cors.clone();
    let service = service
        .openapi(routes::document(settings.chat.max_message_chars))
        .tasks(tasks)
        .bind(move |cfg| routes::configure(cfg, state.clone(), access.clone(), &cors))?;
    Ok(service.on_stop(stop))
}

/// API keys and limits, reloaded in the background; `None` when
/// `auth.enabled` is off (warned about here, once).
fn access_control(
    settings: &Settings,
    meter: &opentelemetry::metrics::Meter,
    tasks: &TaskTracker,
    stop: &CancellationToken,
) -> std::io::Result<Option<(access::Access, Arc<KeyCache>)>> {
    if !settings.auth.enabled {
        tracing::warn!(
            "auth.enabled = false: the public API accepts requests without an API key and \
             without rate limits; use this only on a closed network"
        );
        return Ok(None);
    }
    let postgres = pools::postgres(&settings.database).map_err(std::io::Error::other)?;
    let redis = pools::redis_shared(&settings.redis).map_err(std::io::Error::other)?;
    let keys = KeyCache::new(KeyStore::new(postgres));
    let refresh = Duration::from_secs(settings.auth.refresh_secs.max(1));
    tasks.spawn(keys.clone().run_every(refresh, stop.clone()));
    // A stream lasts at most chat's total timeout; the lease adds a margin.
    let lease = Duration::from_millis(settings.chat.timeouts.total_ms) + Duration::from_secs(30);
    let prefix = &settings.session.key_prefix;
    let access = access::Access::new(
        keys.clone(),
        (
            Limiter::new(redis.clone(), prefix),
            StreamSlots::new(redis, prefix, lease),
        ),
        settings.limits,
        refresh.as_secs(),
        meter,
    );
    Ok(Some((access, keys)))
}
