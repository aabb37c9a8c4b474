//! A stand-in for n8n: its webhook receiver and its health endpoint.
//!
//! [`N8nStandIn::start`] listens on a free port of 127.0.0.1 with a tiny
//! hand-written HTTP/1.1 server (one request per connection, answered with
//! `Connection: close`):
//!
//! * `POST /webhook/<anything>` records the request (its body parsed as JSON)
//!   and answers `200 {"ok":true}` (or the status set with
//!   [`N8nStandIn::set_webhook_status`]);
//! * `GET /healthz` answers `200 {"status":"ok"}` (or `503` after
//!   [`N8nStandIn::set_healthy`]`(false)`);
//! * anything else answers `404`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::util::lock;

/// Largest accepted request head (request line and headers).
const MAX_HEAD: usize = 64 * 1024;
/// Largest accepted request body.
const MAX_BODY: usize = 16 * 1024 * 1024;
/// How long one connection may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One webhook request received by the [`N8nStandIn`].
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedRequest {
    /// The HTTP method (`POST`).
    pub method: String,
    /// The request target's path, without query string (e.g.
    /// `/webhook/chatbot-urgent`).
    pub path: String,
    /// The headers, names lower-cased, in arrival order.
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
}

#[derive(Debug)]
struct State {
    requests: Mutex<Vec<ReceivedRequest>>,
    arrived: Notify,
    webhook_status: AtomicU16,
    healthy: AtomicBool,
}

/// An HTTP receiver standing in for n8n's webhook and health endpoint. It
/// runs on a task of the tokio runtime it was started in; dropping it (or
/// [`N8nStandIn::stop`]) stops accepting connections.
#[derive(Debug)]
pub struct N8nStandIn {
    addr: SocketAddr,
    state: Arc<State>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl N8nStandIn {
    /// Binds 127.0.0.1:0 and starts serving. Must be called inside a tokio
    /// runtime.
    pub async fn start() -> N8nStandIn {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("test-support: n8n stand-in cannot bind: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("test-support: n8n stand-in has no local address: {e}"));
        let state = Arc::new(State {
            requests: Mutex::new(Vec::new()),
            arrived: Notify::new(),
            webhook_status: AtomicU16::new(200),
            healthy: AtomicBool::new(true),
        });
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&state)));
        N8nStandIn {
            addr,
            state,
            task: Mutex::new(Some(task)),
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

    /// Stops accepting connections (the port is released).
    pub fn stop(&self) {
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
    }
}

impl Drop for N8nStandIn {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let state = Arc::clone(&state);
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(REQUEST_TIMEOUT, serve(stream, state)).await;
                });
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// A parsed request.
struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

async fn serve(mut stream: TcpStream, state: Arc<State>) {
    let (status, body) = match read_request(&mut stream).await {
        Ok(req) => route(req, &state),
        Err(msg) => (400, format!(r#"{{"error":{}}}"#, Value::String(msg))),
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n\
         Content-Length: {len}\r\nConnection: close\r\n\r\n{body}",
        reason = reason(status),
        len = body.len(),
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.flush().await;
    let _ = stream.shutdown().await;
}

fn route(req: Request, state: &State) -> (u16, String) {
    match (req.method.as_str(), req.path.as_str()) {
        ("POST", path) if path.starts_with("/webhook/") => {
            let body = serde_json::from_slice(&req.body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&req.body).into_owned()));
            lock(&state.requests).push(ReceivedRequest {
                method: req.method,
                path: req.path,
                headers: req.headers,
                body,
            });
            state.arrived.notify_waiters();
            let status = state.webhook_status.load(Ordering::SeqCst);
            if (200..300).contains(&status) {
                (status, r#"{"ok":true}"#.to_owned())
            } else {
                (status, r#"{"ok":false}"#.to_owned())
            }
        }
        ("GET", "/healthz") => {
            if state.healthy.load(Ordering::SeqCst) {
                (200, r#"{"status":"ok"}"#.to_owned())
            } else {
                (503, r#"{"status":"down"}"#.to_owned())
            }
        }
        _ => (404, r#"{"error":"not found"}"#.to_owned()),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// Reads one HTTP/1.1 request: head, then a `Content-Length` or chunked body.
async fn read_request(stream: &mut TcpStream) -> Result<Request, String> {
    let mut buf = Vec::with_capacity(4096);
    let head_end = loop {
        if let Some(pos) = find(&buf, b"\r\n\r\n") {
            break pos;
        }
        if buf.len() > MAX_HEAD {
            return Err("request head too large".to_owned());
        }
        if read_more(stream, &mut buf).await? == 0 {
            return Err("connection closed before the end of the request head".to_owned());
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut rest = buf[head_end + 4..].to_vec();

    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default();
    if method.is_empty() || target.is_empty() {
        return Err(format!("bad request line {request_line:?}"));
    }
    let path = target.split('?').next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            Some((name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        })
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };

    let chunked =
        header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        read_chunked(stream, &mut rest).await?
    } else {
        let len: usize = match header("content-length") {
            Some(v) => v.parse().map_err(|_| format!("bad content-length {v:?}"))?,
            None => 0,
        };
        if len > MAX_BODY {
            return Err("request body too large".to_owned());
        }
        while rest.len() < len {
            if read_more(stream, &mut rest).await? == 0 {
                return Err("connection closed before the end of the body".to_owned());
            }
        }
        rest.truncate(len);
        rest
    };
    Ok(Request {
        method,
        path,
        headers,
        body,
    })
}

/// Decodes a chunked body; `buf` holds what was read past the head.
async fn read_chunked(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        let line_end = loop {
            if let Some(i) = find(&buf[pos..], b"\r\n") {
                break pos + i;
            }
            if read_more(stream, buf).await? == 0 {
                return Err("connection closed inside a chunked body".to_owned());
            }
        };
        let size_text = String::from_utf8_lossy(&buf[pos..line_end]).into_owned();
        let size_hex = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        pos = line_end + 2;
        if size == 0 {
            // Trailers are not used by any client we talk to; stop here.
            return Ok(body);
        }
        if body.len() + size > MAX_BODY {
            return Err("request body too large".to_owned());
        }
        while buf.len() < pos + size + 2 {
            if read_more(stream, buf).await? == 0 {
                return Err("connection closed inside a chunk".to_owned());
            }
        }
        body.extend_from_slice(&buf[pos..pos + size]);
        pos += size + 2;
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<usize, String> {
    let mut chunk = [0u8; 8192];
    let n = stream
        .read(&mut chunk)
        .await
        .map_err(|e| format!("read error: {e}"))?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
