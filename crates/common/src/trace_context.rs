//! W3C Trace Context: one trace id from the client through every service.
//!
//! - [`trace_requests`], the server middleware every service gets from
//!   [`ServiceBuilder`](crate::server::ServiceBuilder): it continues the
//!   trace of an incoming `traceparent` header (or starts one), runs the
//!   request in a server span, logs one access line, and answers with the
//!   `traceparent` of its span and the bare trace id in `x-trace-id`, so a
//!   client can quote it.
//! - [`inject`], for outbound calls: adds the current span's `traceparent` to
//!   a `reqwest` request. [`Upstream::get`](crate::upstream::Upstream::get)
//!   and its siblings do it for every call between services.
//!
//! Outbound headers go through `opentelemetry-http`'s `HeaderInjector`;
//! incoming ones through a small extractor of actix's headers (actix-web 4
//! uses the `http` 0.2 types, which `opentelemetry-http` does not take).
//! The middleware stays ours: `tracing-actix-web` 0.7.25 (which supports
//! OpenTelemetry 0.33) was read against it (2026-12). Its default root span
//! records about a dozen fields (scheme, host, client address, user agent,
//! target, flavor, a per-request UUID) that the ECS layer would copy onto
//! every log line of the request, changing the log fields and adding work
//! per request; a custom root span would be this one again; and its hooks
//! see the response only by reference, so the `traceparent` and
//! `x-trace-id` response headers would still need a middleware of ours.
//!
//! Spawned work keeps the trace only if it carries the span:
//! [`Inflight::spawn`](crate::server::Inflight::spawn) does, and tasks
//! spawned elsewhere use `.instrument(tracing::Span::current())`.

use std::pin::Pin;
use std::task::Poll;
use std::time::Instant;

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt};
use opentelemetry_http::HeaderInjector;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::{Instrument, Span, field};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C header carrying the trace: `00-<trace id>-<parent span id>-<flags>`.
pub const TRACEPARENT: &str = "traceparent";

/// The response header with only the 32-hex-digit trace id.
pub const TRACE_ID_HEADER: &str = "x-trace-id";

/// Routes polled by machines (probes, Prometheus): their access lines are
/// DEBUG so they do not drown the others.
const QUIET_PATHS: [&str; 3] = ["/livez", "/readyz", "/metrics"];

/// The OpenTelemetry context in the W3C headers of `headers` (an empty
/// context when there is none or it is malformed: a new trace starts).
pub fn extract(headers: &actix_web::http::header::HeaderMap) -> opentelemetry::Context {
    TraceContextPropagator::new().extract(&ActixHeaders(headers))
}

/// `request` with the `traceparent` (and `tracestate`) of the current span;
/// unchanged outside any traced span.
pub fn inject(request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    let mut headers = reqwest::header::HeaderMap::new();
    TraceContextPropagator::new().inject_context(
        &Span::current().context(),
        &mut HeaderInjector(&mut headers),
    );
    if headers.is_empty() {
        request
    } else {
        request.headers(headers)
    }
}

/// The trace id of the current span (32 hex digits), if it is traced.
pub fn current_trace_id() -> Option<String> {
    let context = Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

/// The `traceparent` value naming `context` as the parent.
pub fn traceparent(context: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        context.trace_id(),
        context.span_id(),
        context.trace_flags().to_u8()
    )
}

/// Middleware: the server span of one request (see the module docs).
///
/// The span lives until the response body is sent, so a streamed answer is
/// inside it and its logs carry the trace id too.
pub async fn trace_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let quiet = QUIET_PATHS.contains(&req.path());
    let span = tracing::info_span!(
        "request",
        otel.name = %method,
        otel.kind = "server",
        otel.status_code = field::Empty,
        http.request.method = %method,
        url.path = %req.path(),
        http.route = field::Empty,
    );
    // Fails only when no OpenTelemetry layer is installed (in-process tests):
    // the request then simply has no trace.
    let _ = span.set_parent(extract(req.headers()));
    let mut response = next.call(req).instrument(span.clone()).await?;

    let status = response.status();
    if let Some(route) = response.request().match_pattern() {
        span.record("http.route", route);
    }
    if status.is_server_error() {
        span.record("otel.status_code", "error");
    }
    span.in_scope(|| {
        let duration_ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let status = status.as_u16();
        if quiet {
            tracing::debug!(target: "access",
                { http.response.status_code = status, event.duration = duration_ns },
                "request handled");
        } else {
            tracing::info!(target: "access",
                { http.response.status_code = status, event.duration = duration_ns },
                "request handled");
        }
    });
    let context = span.context();
    let otel_span = context.span();
    let span_context = otel_span.span_context();
    if span_context.is_valid() {
        let headers = response.headers_mut();
        if let Ok(value) = HeaderValue::from_str(&traceparent(span_context)) {
            headers.insert(HeaderName::from_static(TRACEPARENT), value);
        }
        if let Ok(value) = HeaderValue::from_str(&span_context.trace_id().to_string()) {
            headers.insert(HeaderName::from_static(TRACE_ID_HEADER), value);
        }
    }
    Ok(response.map_body(move |_, body| InSpan {
        body: body.boxed(),
        span,
    }))
}

/// A response body sent inside the request's span.
struct InSpan {
    body: BoxBody,
    span: Span,
}

impl MessageBody for InSpan {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.get_mut();
        let _entered = this.span.enter();
        Pin::new(&mut this.body).poll_next(cx)
    }

    fn try_into_bytes(self) -> Result<Bytes, Self> {
        let Self { body, span } = self;
        body.try_into_bytes().map_err(|body| Self { body, span })
    }
}

struct ActixHeaders<'a>(&'a actix_web::http::header::HeaderMap);

impl Extractor for ActixHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::layer::SubscriberExt;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn traced(body: impl FnOnce()) {
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, body);
    }

    #[test]
    fn an_incoming_traceparent_is_continued_and_injected_downstream() {
        traced(|| {
            let mut headers = actix_web::http::header::HeaderMap::new();
            headers.insert(
                HeaderName::from_static(TRACEPARENT),
                HeaderValue::from_static(PARENT),
            );
            let span = tracing::info_span!("request");
            span.set_parent(extract(&headers)).unwrap();
            let _entered = span.enter();
            assert_eq!(
                current_trace_id().as_deref(),
                Some("4bf92f3577b34da6a3ce929d0e0e4736")
            );
            let request = inject(reqwest::Client::new().get("http://127.0.0.1:1/"))
                .build()
                .unwrap();
            let sent = request.headers()[TRACEPARENT].to_str().unwrap();
            assert!(
                sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
                "{sent}"
            );
            assert!(
                !sent.contains("00f067aa0ba902b7"),
                "our span is the new parent: {sent}"
            );
            assert!(sent.ends_with("-01"), "{sent}");
        });
    }

    #[actix_web::test]
    async fn responses_name_the_trace_continued_or_started() {
        use actix_web::middleware::from_fn;
        use actix_web::{App, HttpResponse, test, web};

        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        let _default = tracing::subscriber::set_default(subscriber);
        let app = test::init_service(App::new().wrap(from_fn(trace_requests)).route(
            "/",
            web::get().to(|| async { HttpResponse::Ok().body("ok") }),
        ))
        .await;
        let header = |r: &ServiceResponse<_>, name: &str| {
            r.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default()
        };

        let request = test::TestRequest::get()
            .uri("/")
            .insert_header((TRACEPARENT, PARENT))
            .to_request();
        let continued = test::call_service(&app, request).await;
        assert_eq!(
            header(&continued, TRACE_ID_HEADER),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        let parent = header(&continued, TRACEPARENT);
        assert!(
            parent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{parent}"
        );
        assert_eq!(test::read_body(continued).await, "ok");

        let started =
            test::call_service(&app, test::TestRequest::get().uri("/").to_request()).await;
        let id = header(&started, TRACE_ID_HEADER);
        assert_eq!(id.len(), 32, "{id}");
        assert_ne!(id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(header(&started, TRACEPARENT).contains(&id));
    }

    #[test]
    fn without_a_span_nothing_is_injected() {
        traced(|| {
            let request = inject(reqwest::Client::new().get("http://127.0.0.1:1/"))
                .build()
                .unwrap();
            assert!(request.headers().get(TRACEPARENT).is_none());
            assert_eq!(current_trace_id(), None);
        });
    }

    #[test]
    fn a_malformed_traceparent_starts_a_new_trace() {
        traced(|| {
            let mut headers = actix_web::http::header::HeaderMap::new();
            headers.insert(
                HeaderName::from_static(TRACEPARENT),
                HeaderValue::from_static("00-not-hex-01"),
            );
            let span = tracing::info_span!("request");
            span.set_parent(extract(&headers)).unwrap();
            let id = span.in_scope(current_trace_id).unwrap();
            assert_eq!(id.len(), 32);
            assert_ne!(id, "0".repeat(32));
        });
    }
}
