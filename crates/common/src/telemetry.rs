//! Logs and metrics, set up once per process.
//!
//! - Logs: JSON lines on stdout (or pretty text), filtered per target by
//!   `log.level` or `RUST_LOG`. Fields are flat keys next to `message`.
//! - Metrics: an OpenTelemetry meter provider whose reader is the Prometheus
//!   exporter; `/metrics` renders its registry. Instruments are named without
//!   unit or `_total` suffixes: the exporter adds them from the unit and kind.
//! - [`http_metrics`]: the middleware recording
//!   `http_request_duration_seconds{method, route, status_code}`.

use std::sync::OnceLock;
use std::time::Instant;

use actix_web::HttpResponse;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, Meter, MeterProvider};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use prometheus::{Encoder, TextEncoder};
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

/// Histogram boundaries for request and LLM latencies, in seconds: fine steps
/// under 100 ms so fast answers can be read, and the operations documentation's
/// 0.1, 0.5, 1, 2 and 5 s.
pub const LATENCY_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0,
];

struct Metrics {
    registry: prometheus::Registry,
    provider: SdkMeterProvider,
    http_duration: Histogram<f64>,
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// Starts logging (once per process; later calls keep the first set-up).
pub fn init_logging(service: &'static str, settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let result = match settings.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_target(true)
            .try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
    if result.is_ok() {
        tracing::debug!(service, "logging started");
    }
}

fn metrics(service: &'static str) -> &'static Metrics {
    METRICS.get_or_init(|| {
        let registry = prometheus::Registry::new();
        let resource = Resource::builder().with_service_name(service).build();
        let builder = SdkMeterProvider::builder().with_resource(resource);
        let provider = match opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .scope_info_enabled(false)
            .build()
        {
            Ok(exporter) => builder.with_reader(exporter).build(),
            Err(error) => {
                tracing::error!(%error, "prometheus exporter unavailable; metrics disabled");
                builder.build()
            }
        };
        opentelemetry::global::set_meter_provider(provider.clone());
        let http_duration = provider
            .meter("chatbot")
            .f64_histogram("http_request_duration")
            .with_unit("s")
            .with_description("Duration of HTTP requests in seconds")
            .with_boundaries(LATENCY_BUCKETS.to_vec())
            .build();
        Metrics {
            registry,
            provider,
            http_duration,
        }
    })
}

/// Starts metrics for `service` (once per process) and returns its meter.
pub fn init_metrics(service: &'static str) -> Meter {
    metrics(service).provider.meter(service)
}

/// Renders every metric in the Prometheus text format.
pub fn render_metrics() -> String {
    let Some(m) = METRICS.get() else {
        return String::new();
    };
    let mut out = Vec::new();
    if let Err(error) = TextEncoder::new().encode(&m.registry.gather(), &mut out) {
        tracing::error!(%error, "encoding metrics failed");
    }
    String::from_utf8(out).unwrap_or_default()
}

/// `GET /metrics`.
pub async fn metrics_handler() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(render_metrics())
}

/// Middleware recording the duration of every request under its route
/// template (`/api/sessions/{id}`, never the raw path); requests that match
/// no route are recorded as `unmatched` so the label stays bounded.
pub async fn http_metrics(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = bounded_method(req.method());
    let response = next.call(req).await?;
    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    if let Some(m) = METRICS.get() {
        m.http_duration.record(
            started.elapsed().as_secs_f64(),
            &[
                KeyValue::new("method", method),
                KeyValue::new("route", route),
                KeyValue::new("status_code", i64::from(response.status().as_u16())),
            ],
        );
    }
    Ok(response)
}

fn bounded_method(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}
