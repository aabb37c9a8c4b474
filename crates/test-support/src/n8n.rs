//! A stand-in for n8n: its webhook receiver and its health endpoint, on a
//! `wiremock` server (a real HTTP/1.1 server: keep-alive, chunked bodies).
//!
//! [`N8nStandIn::start`] listens on a free port of 127.0.0.1:
//!
//! * `POST /webhook/<anything>` records the request (its body parsed as JSON)
//!   and answers `200 {"ok":true}` (or the status set with
//!   [`N8nStandIn::set_webhook_status`]);
//! * `GET /healthz` answers `200 {"status":"ok"}` (or `503` after
//!   [`N8nStandIn::set_healthy`]`(false)`);
//! * anything else answers `404`.
//!
//! It also stands in for other receivers of JSON posts, such as an OTLP/HTTP
//! collector (`/webhook/v1/traces`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Notify;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::util::lock;

/// One webhook request received by the [`N8nStandIn`].
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedRequest {
    /// The HTTP method (`POST`).
    pub method: String,
    /// The request target's path, without query string (e.g.
    /// `/webhook/chatbot-urgent`).
    pub path: String,
    /// The headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body parsed as JSON; a body that is not JSON is kept as a JSON
    /// string.
    pub body: Value,
}

impl ReceivedRequest {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn from(request: &Request) -> Self {
        let body = serde_json::from_slice(&request.body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&request.body).into_owned()));
        Self {
            method: request.method.to_string(),
            path: request.url.path().to_owned(),
            headers: request
                .headers
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                .collect(),
            body,
        }
    }
}

#[derive(Debug)]
struct State {
    requests: Mutex<Vec<ReceivedRequest>>,
    arrived: Notify,
    webhook_status: AtomicU16,
    healthy: AtomicBool,
}

/// Records each webhook request and answers with the configured status.
struct Webhook(Arc<State>);

impl Respond for Webhook {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        lock(&self.0.requests).push(ReceivedRequest::from(request));
        self.0.arrived.notify_waiters();
        let status = self.0.webhook_status.load(Ordering::SeqCst);
        ResponseTemplate::new(status).set_body_json(json!({"ok": status < 400}))
    }
}

/// Answers the health endpoint as [`N8nStandIn::set_healthy`] says.
struct Health(Arc<State>);

impl Respond for Health {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        if self.0.healthy.load(Ordering::SeqCst) {
            ResponseTemplate::new(200).set_body_json(json!({"status": "ok"}))
        } else {
            ResponseTemplate::new(503).set_body_json(json!({"status": "down"}))
        }
    }
}

/// An HTTP receiver standing in for n8n's webhook and health endpoint;
/// dropping it (or [`N8nStandIn::stop`]) stops the server.
#[derive(Debug)]
pub struct N8nStandIn {
    addr: SocketAddr,
    state: Arc<State>,
    server: Mutex<Option<MockServer>>,
}

impl N8nStandIn {
    /// Binds 127.0.0.1:0 and starts serving. Must be called inside a tokio
    /// runtime.
    pub async fn start() -> N8nStandIn {
        let state = Arc::new(State {
            requests: Mutex::new(Vec::new()),
            arrived: Notify::new(),
            webhook_status: AtomicU16::new(200),
            healthy: AtomicBool::new(true),
        });
        // Not `MockServer::start`: its servers are pooled and outlive a
        // drop, and stopping must release the port.
        let server = MockServer::builder().start().await;
        Mock::given(method("POST"))
            .and(path_regex("^/webhook/"))
            .respond_with(Webhook(state.clone()))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/healthz"))
            .respond_with(Health(state.clone()))
            .mount(&server)
            .await;
        N8nStandIn {
            addr: *server.address(),
            state,
            server: Mutex::new(Some(server)),
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.addr.port())
    }

    /// `<base_url>/webhook/chatbot-urgent`.
    pub fn webhook_url(&self) -> String {
        format!("{}/webhook/chatbot-urgent", self.base_url())
    }

    /// `<base_url>/healthz`.
    pub fn health_url(&self) -> String {
        format!("{}/healthz", self.base_url())
    }

    /// The JSON bodies of all webhook requests received so far (including
    /// those answered with a failure status), in arrival order.
    pub fn received(&self) -> Vec<Value> {
        lock(&self.state.requests)
            .iter()
            .map(|r| r.body.clone())
            .collect()
    }

    /// All webhook requests received so far, with path and headers.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        lock(&self.state.requests).clone()
    }

    /// Waits until at least `n` webhook bodies have been received or `timeout`
    /// has passed, and returns the bodies received by then (fewer than `n` on
    /// timeout: assert on the result).
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let arrived = self.state.arrived.notified();
            let bodies = self.received();
            if bodies.len() >= n {
                return bodies;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return self.received();
            }
        }
    }

    /// Sets the status the webhook answers with from now on (200 by default;
    /// e.g. 500 to exercise a sender's retries). Requests are recorded
    /// whatever the status.
    pub fn set_webhook_status(&self, status: u16) {
        self.state.webhook_status.store(status, Ordering::SeqCst);
    }

    /// Makes `GET /healthz` answer 200 `{"status":"ok"}` (true, the default)
    /// or 503 `{"status":"down"}` (false).
    pub fn set_healthy(&self, healthy: bool) {
        self.state.healthy.store(healthy, Ordering::SeqCst);
    }

    /// Stops the server (the port is released).
    pub fn stop(&self) {
        lock(&self.server).take();
    }
}
