//! Building, running and stopping a service.
//!
//! Every service is built the same way:
//!
//! ```text
//! ServiceBuilder::new("chat", &settings.chat.server)
//!     .readiness(name, probe)      // one per required dependency
//!     .openapi(document)           // served at /openapi.json
//!     .tasks(tracker)              // background work to wait for at shutdown
//!     .inflight(inflight)          // per-request work that outlives its client
//!     .bind(move |cfg| routes(cfg, state.clone()))?  // binds, logs the real port
//!     .run_until_stopped().await   // SIGTERM/SIGINT: drain, then exit
//! ```
//!
//! The common routes (`/livez`, `/readyz`, `/metrics`, `/openapi.json`), the
//! JSON 404 for unknown routes and the request metrics middleware are added
//! here, so no service repeats them.
//!
//! Threads: a request is handled from start to end on the HTTP worker thread
//! that accepted it, outbound calls included (see [`Inflight`]); the
//! process's own runtime runs only background loops.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::sync::atomic::{AtomicBool, Ordering};

use actix_web::body::{BodySize, BoxBody, EitherBody, MessageBody};
use actix_web::dev::{Server, ServerHandle, ServiceRequest, ServiceResponse};
use actix_web::http::ConnectionType;
use actix_web::middleware::{Next, from_fn};
use actix_web::web::Bytes;
use actix_web::{App, HttpResponse, HttpServer, Resource, ResponseError, web};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;
use tracing::Instrument;

use crate::config::{Secret, ServerSettings, Settings};
use crate::error::{ApiError, ErrorCode};
use crate::health::{ReadinessReport, Required, run_checks};
use crate::internal::InternalToken;
use crate::probe::Probe;
use crate::{telemetry, trace_context};

/// Work a request starts that must run to its end even when the client
/// hangs up: a chat exchange (its row is stored whatever happens), an
/// escalation post.
///
/// It runs on the runtime of the caller, which for a request is the HTTP
/// worker's own thread: a request does not hand its I/O to another thread
/// (on a 2-core machine those hand-offs cost about a third of each service's
/// CPU in context switches), though with several workers a pooled
/// connection's I/O runs on the worker that opened it. Graceful shutdown waits for this work before
/// any worker stops (see [`RunningService::run_until_stopped`]), so the
/// connections it uses, which live on the worker that opened them, outlast
/// it. Every request also counts as in flight until its response body is
/// sent (the server's request-tracking middleware).
#[derive(Debug, Clone, Default)]
pub struct Inflight(TaskTracker);

impl Inflight {
    /// Starts `work` on the current runtime, with the caller's span (so its
    /// logs and calls keep the request's trace).
    pub fn spawn<F>(&self, work: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.0.spawn(work.instrument(tracing::Span::current()))
    }

    /// Runs `work` to its end and waits for it. The work goes on even if the
    /// waiting request is dropped (a client hanging up).
    pub async fn run<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        F: Future<Output = Result<T, ApiError>> + Send + 'static,
        T: Send + 'static,
    {
        match self.spawn(work).await {
            Ok(result) => result,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(_) => Err(ApiError::new(
                ErrorCode::ServiceUnavailable,
                "the service is shutting down",
            )),
        }
    }

    /// Waits until no work is running (new work may still start meanwhile).
    async fn settle(&self) {
        self.0.close();
        self.0.wait().await;
    }
}

/// How long an idle keep-alive connection stays open. Longer than the
/// clients' pool idle timeout (30 s), so the server never closes a connection
/// a peer is about to reuse (which failed about one request in 16,000 under
/// load with actix's 5 s default).
pub const KEEP_ALIVE: Duration = Duration::from_secs(75);

/// How long a client may take to send a request's head (line and
/// headers) once its connection is open or its last request answered:
/// past it, 408 and the connection is closed. The body has its own limit
/// ([`crate::body::BODY_TIMEOUT`]).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one readiness check may take.
const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

/// Configures one service's HTTP server.
pub struct ServiceBuilder {
    name: &'static str,
    settings: ServerSettings,
    checks: Vec<Required>,
    openapi: utoipa::openapi::OpenApi,
    tasks: TaskTracker,
    inflight: Inflight,
    /// `None`: a public service; `Some(token)`: an internal one, with the
    /// token it requires if one is set.
    internal: Option<Option<Secret>>,
    /// Whether a client's EOF ends its request at once (see
    /// [`ServiceBuilder::cancel_on_hang_up`]).
    cancel_on_hang_up: bool,
}

/// A bound, not yet running, service.
pub struct RunningService {
    name: &'static str,
    addr: SocketAddr,
    server: Server,
    /// The separate `/metrics` listener, if the service has one.
    metrics: Option<(SocketAddr, Server)>,
    tasks: TaskTracker,
    inflight: Inflight,
    draining: Arc<AtomicBool>,
    grace: Duration,
    on_stop: Vec<CancellationToken>,
}

#[derive(Clone)]
pub(crate) struct Common {
    checks: Arc<[Required]>,
    openapi: Bytes,
    draining: Arc<AtomicBool>,
    inflight: Inflight,
}

impl ServiceBuilder {
    /// A service named `name` listening as `settings` say.
    pub fn new(name: &'static str, settings: &ServerSettings) -> Self {
        Self {
            name,
            settings: *settings,
            checks: Vec::new(),
            openapi: utoipa::openapi::OpenApi::default(),
            tasks: TaskTracker::new(),
            inflight: Inflight::default(),
            internal: None,
            cancel_on_hang_up: false,
        }
    }

    /// Drops a request's work (its handler, or its streamed body) as soon as
    /// the client closes its side of the connection, as Ollama's server
    /// does, instead of waiting for a write to fail: for a service whose
    /// answers are expensive to compute (local-llm's generations). Other
    /// services keep HTTP/1 half-closed connections working.
    pub fn cancel_on_hang_up(mut self) -> Self {
        self.cancel_on_hang_up = true;
        self
    }

    /// Adds a required dependency, `name`, to `/readyz`.
    pub fn readiness(mut self, name: &'static str, probe: impl Probe) -> Self {
        self.checks.push((name, Box::new(probe)));
        self
    }

    /// The service's OpenAPI document; `/openapi.json` serves it with the
    /// common routes added.
    pub fn openapi(mut self, document: utoipa::openapi::OpenApi) -> Self {
        self.openapi = document;
        self
    }

    /// Background tasks that shutdown waits for (within the grace period).
    pub fn tasks(mut self, tracker: TaskTracker) -> Self {
        self.tasks = tracker;
        self
    }

    /// Per-request work that shutdown lets finish before stopping the
    /// workers (see [`Inflight`]).
    pub fn inflight(mut self, inflight: Inflight) -> Self {
        self.inflight = inflight;
        self
    }

    /// Marks an internal service: its routes (all but `/livez`, `/readyz`
    /// and `/metrics`) require `token` when it is set, and binding beyond
    /// loopback without one fails ([`crate::internal`]).
    pub fn internal(mut self, token: Option<&Secret>) -> Self {
        self.internal = Some(token.cloned());
        self
    }

    /// The token check the listener needs, if any.
    fn internal_token(&self) -> io::Result<Option<InternalToken>> {
        match &self.internal {
            None => Ok(None),
            Some(Some(token)) => Ok(Some(InternalToken::new(token))),
            Some(None) if !self.settings.beyond_loopback() => Ok(None),
            Some(None) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "internal.token is required: {} listens on {} (beyond loopback), where \
                     anyone could call its API; set CHATBOT__INTERNAL__TOKEN_FILE (the same \
                     token on the gateway) or bind 127.0.0.1",
                    self.name,
                    self.settings.addr()
                ),
            )),
        }
    }

    /// Binds the listener and builds the server with the service's routes.
    pub fn bind<F>(self, routes: F) -> io::Result<RunningService>
    where
        F: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
    {
        let internal = self.internal_token()?.map(web::Data::new);
        let metrics = self
            .settings
            .metrics_addr()
            .map(|addr| bind_metrics(self.name, addr))
            .transpose()?;
        let metrics_here = metrics.is_none();
        let openapi = crate::openapi::with_common_routes(self.openapi, metrics_here);
        let common = Common {
            checks: self.checks.into(),
            openapi: Bytes::from(crate::openapi::to_json(&openapi).map_err(io::Error::other)?),
            draining: Arc::default(),
            inflight: self.inflight.clone(),
        };
        let draining = common.draining.clone();
        let grace = Duration::from_secs(self.settings.shutdown_grace_secs);
        let mut server = HttpServer::new(move || {
            let mut app = App::new();
            if let Some(token) = &internal {
                app = app.app_data(token.clone());
            }
            app.wrap(from_fn(crate::internal::require))
                .wrap(from_fn(track_requests))
                .wrap(from_fn(telemetry::http_metrics))
                .wrap(from_fn(trace_context::trace_requests))
                .app_data(web::Data::new(common.clone()))
                .configure(move |cfg| common_routes(cfg, metrics_here))
                .configure(routes.clone())
                .default_service(web::to(not_found))
        })
        .on_connect(no_delay)
        .keep_alive(KEEP_ALIVE)
        .client_request_timeout(HEADER_TIMEOUT)
        .client_disconnect_timeout(Duration::from_secs(1))
        .h1_allow_half_closed(!self.cancel_on_hang_up)
        .disable_signals()
        .shutdown_timeout(grace.as_secs());
        if self.settings.workers > 0 {
            server = server.workers(self.settings.workers);
        }
        let server = server.bind(self.settings.addr())?;
        let addr = server
            .addrs()
            .first()
            .copied()
            .unwrap_or_else(|| self.settings.addr());
        tracing::info!(service = self.name, addr = %addr, "listening");
        Ok(RunningService {
            name: self.name,
            addr,
            server: server.run(),
            metrics,
            tasks: self.tasks,
            inflight: self.inflight,
            draining,
            grace,
            on_stop: Vec::new(),
        })
    }
}

impl RunningService {
    /// The bound address (the real port when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Where `/metrics` is served: the metrics listener, or the main one.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics.as_ref().map_or(self.addr, |(addr, _)| *addr)
    }

    /// Cancels `token` when the server has stopped, before waiting for the
    /// background tasks: loops that run until shutdown watch it.
    pub fn on_stop(mut self, token: CancellationToken) -> Self {
        self.on_stop.push(token);
        self
    }

    /// A handle to stop the server from elsewhere (tests).
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until SIGTERM or SIGINT (or [`ServerHandle::stop`]), then
    /// shuts down in order, within the grace period at each step:
    ///
    /// 1. draining: new requests get 503 `service_unavailable` with
    ///    `Connection: close` (and `/readyz` fails), `/livez` and `/metrics`
    ///    (on either listener) still answer; in-flight requests and their [`Inflight`] work (an
    ///    exchange whose client hung up) run to their end;
    /// 2. the HTTP workers stop, once their in-flight responses are sent (at
    ///    once when step 1 used up the grace period);
    /// 3. background tasks finish, and traces are flushed.
    pub async fn run_until_stopped(self) -> io::Result<()> {
        let handle = self.server.handle();
        let (name, grace) = (self.name, self.grace);
        let (draining, inflight) = (self.draining.clone(), self.inflight.clone());
        let watcher = tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!(service = name, "shutdown requested; draining");
            draining.store(true, Ordering::SeqCst);
            let drained = tokio::time::timeout(grace, inflight.settle()).await.is_ok();
            if !drained {
                tracing::warn!(
                    service = name,
                    "requests still running after the grace period; stopping anyway"
                );
            }
            // Drained, the workers only finish sending what is left; past the
            // grace period they stop at once.
            handle.stop(drained).await;
        });
        // Prometheus keeps scraping through the drain; the metrics listener
        // stops with the main one.
        let metrics = self.metrics.map(|(_, server)| {
            let handle = server.handle();
            (handle, tokio::spawn(server))
        });
        let result = self.server.await;
        watcher.abort();
        if let Some((handle, running)) = metrics {
            handle.stop(true).await;
            let _ = running.await;
        }
        self.on_stop.iter().for_each(CancellationToken::cancel);
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                service = name,
                "background tasks still running after the grace period"
            );
        }
        tracing::info!(service = name, "stopped");
        telemetry::flush();
        result
    }
}

/// Middleware: counts every request as [`Inflight`] until its response body
/// is sent (so a stream being relayed holds shutdown back), and while
/// draining answers every request but `/livez` and `/metrics` with 503 and
/// closes the connection, so clients and load balancers go elsewhere while
/// in-flight work finishes.
async fn track_requests(
    common: web::Data<Common>,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<Guarded>>, actix_web::Error> {
    // The token first: shutdown either sees this request in flight, or the
    // request sees that shutdown has begun.
    let token = common.inflight.0.token();
    if common.draining.load(Ordering::SeqCst) && !matches!(req.path(), "/livez" | "/metrics") {
        let mut response = ApiError::new(
            ErrorCode::ServiceUnavailable,
            "the service is shutting down",
        )
        .error_response();
        response
            .head_mut()
            .set_connection_type(ConnectionType::Close);
        return Ok(req.into_response(response).map_into_right_body());
    }
    let response = next.call(req).await?;
    Ok(response
        .map_body(move |_, body| Guarded {
            body: body.boxed(),
            _token: token,
        })
        .map_into_left_body())
}

/// A response body that holds its request's [`Inflight`] token until sent.
struct Guarded {
    body: BoxBody,
    _token: TaskTrackerToken,
}

impl MessageBody for Guarded {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Bytes, Self::Error>>> {
        std::pin::Pin::new(&mut self.get_mut().body).poll_next(cx)
    }
}

/// Turns off Nagle's algorithm on every accepted connection: a streamed
/// reply is many small writes, and without this each token can wait for the
/// peer's delayed ACK (about 40 ms a hop).
fn no_delay(connection: &dyn std::any::Any, _: &mut actix_web::dev::Extensions) {
    if let Some(socket) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() {
        let _ = socket.set_nodelay(true);
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn common_routes(cfg: &mut web::ServiceConfig, with_metrics: bool) {
    cfg.service(resource("/livez", "GET").route(web::get().to(livez)))
        .service(resource("/readyz", "GET").route(web::get().to(readyz)))
        .service(resource("/openapi.json", "GET").route(web::get().to(openapi)));
    if with_metrics {
        cfg.service(metrics_route());
    }
}

fn metrics_route() -> Resource {
    resource("/metrics", "GET").route(web::get().to(telemetry::metrics_handler))
}

/// The listener that serves only `/metrics` (`server.metrics_port`), for
/// Prometheus, apart from the API: one worker, logged as `metrics listening`
/// before the main listener's `listening`.
fn bind_metrics(name: &'static str, addr: SocketAddr) -> io::Result<(SocketAddr, Server)> {
    let server = HttpServer::new(|| {
        App::new()
            .service(metrics_route())
            .default_service(web::to(not_found))
    })
    .workers(1)
    .disable_signals()
    .bind(addr)?;
    let addr = server.addrs().first().copied().unwrap_or(addr);
    tracing::info!(service = name, addr = %addr, "metrics listening");
    Ok((addr, server.run()))
}

/// A resource whose other methods get a JSON 405 with the `Allow` header
/// RFC 9110 requires; `allow` lists the methods its routes take.
pub fn resource(path: &str, allow: &'static str) -> Resource {
    web::resource(path).default_service(web::to(move || method_not_allowed(allow)))
}

/// The process answers (never checks a dependency).
#[utoipa::path(get, path = "/livez", responses(
    (status = 200, description = "alive", body = inline(Object), example = json!({"status": "alive"}))
))]
pub(crate) async fn livez() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "alive"}))
}

/// The service's own required dependencies are usable.
#[utoipa::path(get, path = "/readyz", responses(
    (status = 200, description = "ready", body = ReadinessReport),
    (status = 503, description = "not ready", body = ReadinessReport)
))]
pub(crate) async fn readyz(common: web::Data<Common>) -> HttpResponse {
    let report = run_checks(&common.checks, READINESS_TIMEOUT).await;
    if report.is_ready() {
        HttpResponse::Ok().json(report)
    } else {
        HttpResponse::ServiceUnavailable().json(report)
    }
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", responses(
    (status = 200, description = "OpenAPI 3.1 document", body = inline(Object))
))]
pub(crate) async fn openapi(common: web::Data<Common>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(common.openapi.clone())
}

async fn not_found() -> HttpResponse {
    ApiError::new(ErrorCode::NotFound, "no such route").error_response()
}

async fn method_not_allowed(allow: &'static str) -> HttpResponse {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!("this route supports only {allow}"),
    )
    .response_with([(
        actix_web::http::header::ALLOW,
        actix_web::http::header::HeaderValue::from_static(allow),
    )])
}

/// Loads the settings and starts logs, traces and metrics for `service`; a
/// bad configuration ends the process here with one line and exit code 64.
pub fn start_process(service: &'static str) -> Settings {
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("{service}: {error}");
            std::process::exit(64);
        }
    };
    telemetry::init_tracing(service, &settings.log, &settings.tracing);
    telemetry::init_metrics(service);
    settings
}
