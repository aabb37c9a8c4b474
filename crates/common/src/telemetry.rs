//! Logs, traces and metrics, set up once per process.
//!
//! - Logs and traces: [`init_tracing`]. Elastic Common Schema JSON lines on
//!   stdout (or pretty text) and optionally in rotated files
//!   ([`crate::logging`]), filtered per target by `log.level` or `RUST_LOG`;
//!   every line inside a request carries its `trace.id` (W3C propagation in
//!   [`crate::trace_context`]); spans go to OTLP when an endpoint is set.
//! - Metrics: an OpenTelemetry meter provider whose reader is the Prometheus
//!   exporter; `/metrics` renders its registry. Instruments are named without
//!   unit or `_total` suffixes: the exporter adds them from the unit and kind.
//! - [`http_metrics`]: the middleware recording
//!   `http_request_duration_seconds{method, route, status_code}`.

use std::io::IsTerminal as _;
use std::sync::OnceLock;
use std::time::Instant;

use actix_web::HttpResponse;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, Meter, MeterProvider};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use prometheus::{Encoder, TextEncoder};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Level, Metadata, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::{LogFormat, LogSettings, Settings, TracingSettings};
use crate::logging::{EcsLayer, LineWriter, LogFiles};

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

/// The tracer provider, kept to flush spans at shutdown.
static TRACER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Spans are kept at INFO and above whatever `log.level` says: they carry the
/// trace context, which must propagate even when their logs are filtered out.
const SPAN_LEVEL: Level = Level::INFO;

/// Starts logs only: [`init_tracing`] with the default tracing settings
/// (trace ids are still made, logged and propagated; nothing is exported).
pub fn init_logging(service: &'static str, settings: &LogSettings) {
    init_tracing(service, settings, &Settings::default().tracing);
}

/// Starts logs and traces (once per process; later calls keep the first
/// set-up). One `tracing` subscriber serves both:
///
/// - ECS JSON lines ([`crate::logging`]) on stdout, or human text with
///   `log.format = "pretty"`, and, with `log.dir`, to `<service>.log` and
///   `<service>.error.log` there, rotated by size; events are filtered per
///   target by `log.level`, which `RUST_LOG` overrides;
/// - an OpenTelemetry tracer sampling `tracing.sample_ratio` of new traces
///   (incoming ones follow their parent), whose spans are exported over
///   OTLP/HTTP when `tracing.otlp_endpoint` is set. W3C propagation is in
///   [`crate::trace_context`].
pub fn init_tracing(service: &'static str, log: &LogSettings, traces: &TracingSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (files, files_error) = match &log.dir {
        Some(dir) => match LogFiles::open(dir, service, log.max_file_bytes, log.max_files) {
            Ok(files) => (Some(files), None),
            Err(error) => (None, Some((dir.clone(), error))),
        },
        None => (None, None),
    };
    let (provider, exporter_error) = tracer_provider(service, traces);
    let pretty = log.format == LogFormat::Pretty;
    let writer = LineWriter::start(!pretty, files);
    let result =
        tracing_subscriber::registry()
            .with(Gate { events: filter })
            .with(
                tracing_opentelemetry::layer()
                    .with_tracer(provider.tracer(service))
                    // Spans carry what operators query; busy/idle timings
                    // (two clock reads each time a request's span is
                    // entered or left) and source locations are left out.
                    .with_threads(false)
                    .with_tracked_inactivity(false)
                    .with_location(false),
            )
            .with(EcsLayer::new(service, writer.clone()))
            .with(pretty.then(|| {
                tracing_subscriber::fmt::layer().with_ansi(std::io::stdout().is_terminal())
            }))
            .try_init();
    if result.is_err() {
        return;
    }
    writer.install();
    let _ = TRACER.set(provider);
    tracing::debug!(service, "logging started");
    if let Some((dir, error)) = files_error {
        tracing::error!(dir = %dir.display(), error = %error, "cannot write log files; logging to stdout only");
    }
    if let Some(error) = exporter_error {
        tracing::error!(error = %error, "cannot export traces over OTLP; trace ids are still logged");
    }
}

fn tracer_provider(
    service: &'static str,
    settings: &TracingSettings,
) -> (SdkTracerProvider, Option<String>) {
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(settings.sample_ratio)));
    let mut builder = SdkTracerProvider::builder()
        .with_sampler(sampler)
        .with_resource(Resource::builder().with_service_name(service).build());
    let mut error = None;
    if let Some(endpoint) = &settings.otlp_endpoint {
        match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(endpoint)
            .build()
        {
            Ok(exporter) => builder = builder.with_batch_exporter(exporter),
            Err(e) => error = Some(e.to_string()),
        }
    }
    (builder.build(), error)
}

/// Writes the log lines still in memory and exports the spans still
/// buffered (call it once at shutdown). Blocks until the exporter answers or
/// gives up.
pub fn flush() {
    crate::logging::flush();
    if let Some(provider) = TRACER.get()
        && let Err(error) = provider.force_flush()
    {
        tracing::warn!(error = %error, "flushing traces failed");
    }
}

/// The global filter: events as `log.level` (or `RUST_LOG`) says, spans at
/// [`SPAN_LEVEL`] and above always (see there).
struct Gate {
    events: EnvFilter,
}

impl<S> Layer<S> for Gate
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        let events = Layer::<S>::register_callsite(&self.events, meta);
        match (meta.is_span(), *meta.level() <= SPAN_LEVEL) {
            (true, true) => Interest::always(),
            (true, false) => Interest::never(),
            (false, _) => events,
        }
    }

    fn enabled(&self, meta: &Metadata<'_>, ctx: Context<'_, S>) -> bool {
        if meta.is_span() {
            *meta.level() <= SPAN_LEVEL
        } else {
            Layer::<S>::enabled(&self.events, meta, ctx)
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        let events = Layer::<S>::max_level_hint(&self.events).unwrap_or(LevelFilter::TRACE);
        Some(events.max(LevelFilter::from_level(SPAN_LEVEL)))
    }

    // The filter tracks spans for its `[span]` directives.
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        self.events.on_new_span(attrs, id, ctx);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        self.events.on_record(id, values, ctx);
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        self.events.on_enter(id, ctx);
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        self.events.on_exit(id, ctx);
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        self.events.on_close(id, ctx);
    }
}

fn metrics(service: &'static str) -> &'static Metrics {
    METRICS.get_or_init(|| {
        let registry = prometheus::Registry::new();
        // process_resident_memory_bytes, process_cpu_seconds_total,
        // process_open_fds and friends, read from /proc at each scrape.
        let process = prometheus::process_collector::ProcessCollector::for_self();
        if let Err(error) = registry.register(Box::new(process)) {
            tracing::warn!(%error, "process metrics unavailable");
        }
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

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", responses(
    (status = 200, description = "metrics in the Prometheus text format", body = String)
))]
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
