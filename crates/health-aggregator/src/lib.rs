//! The health aggregator (port 3004).
//!
//! A background loop polls every configured service's `/readyz` concurrently
//! every `aggregator.interval_secs`, each call bounded by
//! `aggregator.timeout_secs`, and keeps the last result. `GET /health` serves
//! that cached result and never triggers a check itself, so a burst of health
//! probes costs nothing downstream. Start with [`poller`].

pub mod poller;

use std::time::Duration;

use actix_web::{HttpResponse, web};
use chatbot_common::config::Settings;
use chatbot_common::server::{RunningService, ServiceBuilder, resource};
use chatbot_common::upstream::{Upstream, http_client};
use serde_json::json;
use tokio_util::task::TaskTracker;

use crate::poller::{Poller, Verdict};

/// Builds the aggregator, starts its poll loop and binds its listener.
pub fn build(settings: &Settings) -> std::io::Result<RunningService> {
    let agg = &settings.aggregator;
    let timeout = Duration::from_secs(agg.timeout_secs.max(1));
    let client = http_client(timeout);
    let targets = agg
        .services
        .iter()
        .map(|(name, url)| (name.clone(), Upstream::new("service", url, client.clone())))
        .collect();
    let poller = Poller::new(targets, timeout);
    let tasks = TaskTracker::new();
    let interval = Duration::from_secs(agg.interval_secs.max(1));
    let stop = tokio_util::sync::CancellationToken::new();
    tasks.spawn(poller.clone().run(interval, stop.clone()));
    let data = web::Data::new(poller);
    let service = ServiceBuilder::new("health-aggregator", &agg.server)
        .openapi(document())
        .tasks(tasks)
        .bind(move |cfg| {
            cfg.app_data(data.clone())
                .service(resource("/health", "GET").route(web::get().to(health)));
        })?;
    Ok(service.on_stop(stop))
}

async fn health(poller: web::Data<Poller>) -> HttpResponse {
    let verdict: Verdict = poller.latest();
    let mut response = if verdict.status == "ERROR" {
        HttpResponse::ServiceUnavailable()
    } else {
        HttpResponse::Ok()
    };
    response.json(verdict)
}

fn document() -> serde_json::Value {
    use chatbot_common::openapi::{document, json_response};
    let verdict = json!({"type": "object", "required": ["status", "timestamp", "services"]});
    document(
        "chatbot health aggregator",
        "One cached health verdict over every service.",
        json!({"/health": {"get": {
            "summary": "The cached verdict.",
            "responses": {
                "200": json_response("OK or WARN", verdict.clone()),
                "503": json_response("ERROR", verdict)
            }
        }}}),
        json!({}),
    )
}
