//! The public gateway (port 3001).
//!
//! It owns the public API: it reads and validates every request (body limit,
//! JSON, fields) so that bad input never travels further, then forwards it to
//! the chat or session service over pooled keep-alive connections and relays
//! the answer, streams included. Start with [`routes`].

pub mod access;
pub mod compat;
pub mod cors;
pub mod health;
pub mod overhead;
pub mod routes;

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use chatbot_common::config::Settings;
use chatbot_common::probe::Endpoint;
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
    let access = access::Access::from_settings(settings, &meter, &tasks, &stop)?;
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
    if let Some(access) = &access {
        service = service.readiness("api_keys", access.keys_loaded());
    }
    let access = access.map(web::Data::new);
    cors::validate(&gw.cors)?;
    let cors = gw.cors.clone();
    let service = service
        .openapi(routes::document(settings.chat.max_message_chars))
        .tasks(tasks)
        .bind(move |cfg| routes::configure(cfg, state.clone(), access.clone(), &cors))?;
    Ok(service.on_stop(stop))
}
