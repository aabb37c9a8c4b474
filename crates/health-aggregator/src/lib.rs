//! The health aggregator (port 3004): one honest, cheap, cached verdict over
//! everything the chatbot depends on.
//!
//! [`checks`] defines the components (PostgreSQL, Redis, Ollama, optional
//! n8n, disk, memory and every service's `/readyz`); [`poller`] runs them
//! concurrently in the background every `aggregator.interval_secs`, each
//! bounded by `aggregator.timeout_secs`; [`verdict`] turns the cached results
//! into the `GET /health` body. Requests never trigger a check.
//! [`federate`] merges every service's metrics into `GET /metrics/all`.

pub mod checks;
pub mod federate;
pub mod poller;
pub mod verdict;

use std::sync::Arc;
use std::time::Duration;

use actix_web::{HttpResponse, web};
use chatbot_common::config::Settings;
use chatbot_common::server::{RunningService, ServiceBuilder, resource};
use chatbot_common::telemetry;
use chatbot_common::upstream::{Upstream, http_client};
use chatbot_common::verdict::{MEDIA_TYPE, Status, Verdict};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::checks::{
    AnyOllama, Check, Disk, Endpoint, Memory, Ollama, Postgres, Redis, Thresholds,
};
use crate::poller::Poller;

/// Builds the aggregator, starts its poll loop and binds its listener.
pub fn build(settings: &Settings) -> std::io::Result<RunningService> {
    let agg = &settings.aggregator;
    let interval = Duration::from_secs(agg.interval_secs.max(1));
    let timeout = Duration::from_secs(agg.timeout_secs.max(1));
    let meter = telemetry::init_metrics("health-aggregator");
    let poller = Poller::new(
        components(settings, timeout)?,
        timeout,
        interval * agg.stale_after_intervals.max(1),
        &meter,
    );
    let tasks = TaskTracker::new();
    let stop = CancellationToken::new();
    tasks.spawn(poller.clone().run_every(interval, stop.clone()));
    let client = http_client(timeout);
    let state = web::Data::new(State {
        poller,
        max_age: interval.as_secs(),
        services: agg
            .metrics
            .iter()
            .map(|(name, url)| (name.clone(), Upstream::new("service", url, client.clone())))
            .collect(),
    });
    let service = ServiceBuilder::new("health-aggregator", &agg.server)
        .internal(settings.internal.token.as_ref())
        .openapi(<AggregatorApi as utoipa::OpenApi>::openapi())
        .tasks(tasks)
        .bind(move |cfg| {
            cfg.app_data(state.clone())
                .service(resource("/health", "GET").route(web::get().to(health)))
                .service(resource("/metrics/all", "GET").route(web::get().to(all_metrics)));
        })?;
    Ok(service.on_stop(stop))
}

/// Every component to check, from the settings.
fn components(settings: &Settings, timeout: Duration) -> std::io::Result<Vec<Arc<Check>>> {
    let agg = &settings.aggregator;
    let client = http_client(timeout);
    let upstream = |name, url: &str| Upstream::new(name, url, client.clone());
    let database =
        chatbot_common::pools::postgres(&settings.database).map_err(std::io::Error::other)?;
    let redis =
        chatbot_common::pools::redis_shared(&settings.redis).map_err(std::io::Error::other)?;
    let mut checks = vec![
        Check::new("database", true, "datastore", Postgres(database)),
        Check::new("redis", true, "datastore", Redis(redis)),
        Check::new(
            "disk",
            true,
            "system",
            Disk {
                paths: agg.disk_paths.clone(),
                thresholds: Thresholds::disk(agg),
            },
        ),
        Check::new(
            "memory",
            true,
            "system",
            Memory {
                thresholds: Thresholds::memory(agg),
            },
        ),
    ];
    checks.extend(ollama_checks(settings, &upstream));
    if !settings.n8n.health_url.is_empty() {
        let n8n = upstream("n8n", &settings.n8n.health_url);
        checks.push(Check::new(
            "n8n",
            false,
            "component",
            Endpoint::new(n8n, ""),
        ));
    }
    for (name, url) in &agg.services {
        let service = upstream("service", url);
        checks.push(Check::new(
            name.clone(),
            true,
            "component",
            Endpoint::new(service, "/readyz"),
        ));
    }
    Ok(checks)
}

/// `ollama`, and with several backends one optional `ollama-N` each.
fn ollama_checks(
    settings: &Settings,
    upstream: &dyn Fn(&'static str, &str) -> Upstream,
) -> Vec<Arc<Check>> {
    let urls = settings.ollama.backends();
    let ollama = |url: &str| Ollama {
        tags: Endpoint::new(upstream("ollama", url), "/api/tags"),
        model: settings.chat.model.clone(),
    };
    if let [one] = urls.as_slice() {
        return vec![Check::new("ollama", true, "system", ollama(one))];
    }
    let mut checks = vec![Check::new(
        "ollama",
        true,
        "system",
        AnyOllama(urls.iter().map(|url| ollama(url)).collect()),
    )];
    checks.extend(
        urls.iter()
            .enumerate()
            .map(|(i, url)| Check::new(format!("ollama-{}", i + 1), false, "system", ollama(url))),
    );
    checks
}

struct State {
    poller: Poller,
    max_age: u64,
    services: Vec<(String, Upstream)>,
}

/// Every service's metrics and the aggregator's own, each sample labelled
/// `service`, in one exposition. A service that cannot be scraped is left out
/// and counted in `chatbot_federation_scrape_up`.
#[utoipa::path(get, path = "/metrics/all", responses(
    (status = 200, description = "metrics in the Prometheus text format", body = String)
))]
async fn all_metrics(state: web::Data<State>) -> HttpResponse {
    let gathered = scrape_all(state.services.clone()).await;
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(gathered)
}

async fn scrape_all(services: Vec<(String, Upstream)>) -> String {
    let scrapes = services.into_iter().map(|(name, upstream)| async move {
        let response = upstream.get("/metrics").send().await;
        let text = match response {
            Ok(r) if r.status().is_success() => r.text().await.ok(),
            _ => None,
        };
        (name, text)
    });
    let mut expositions = vec![("health-aggregator".to_owned(), telemetry::render_metrics())];
    let mut up = String::from(
        "# HELP chatbot_federation_scrape_up 1 when the service's metrics were collected\n\
         # TYPE chatbot_federation_scrape_up gauge\n",
    );
    for (name, text) in futures::future::join_all(scrapes).await {
        up.push_str(&format!(
            "chatbot_federation_scrape_up{{target=\"{name}\"}} {}\n",
            u8::from(text.is_some())
        ));
        if let Some(text) = text {
            expositions.push((name, text));
        }
    }
    expositions.push(("health-aggregator".to_owned(), up));
    let merged = federate::merge(&expositions);
    if merged.dropped_samples > 0 {
        tracing::warn!(
            dropped = merged.dropped_samples,
            "samples dropped while merging metrics"
        );
    }
    merged.text
}

/// The cached verdict (never triggers a check).
#[utoipa::path(get, path = "/health", responses(
    (status = 200, description = "OK or WARN", body = Verdict, content_type = "application/health+json"),
    (status = 503, description = "ERROR", body = Verdict, content_type = "application/health+json")
))]
async fn health(state: web::Data<State>) -> HttpResponse {
    let verdict = state.poller.verdict();
    let mut response = if verdict.status == Status::Error {
        HttpResponse::ServiceUnavailable()
    } else {
        HttpResponse::Ok()
    };
    response
        .content_type(MEDIA_TYPE)
        .insert_header(("Cache-Control", format!("max-age={}", state.max_age)))
        .json(verdict)
}

/// The aggregator's API, as `/openapi.json` describes it.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "chatbot health aggregator",
        description = "One cached health verdict over every dependency and service."
    ),
    paths(health, all_metrics)
)]
struct AggregatorApi;
