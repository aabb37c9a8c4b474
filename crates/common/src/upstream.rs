//! Pooled keep-alive HTTP clients toward other services and the LLM.
//!
//! One [`Upstream`] per peer, built once at start-up and shared by every
//! worker: reqwest keeps its connections alive and reuses them. Requests are
//! built with [`Upstream::get`], [`Upstream::post`] or [`Upstream::request`],
//! which add the current span's W3C `traceparent` (see
//! [`crate::trace_context`]), so the peer's logs carry the same trace id.
//! An upstream made with [`Upstream::spread`] takes the replicas behind its
//! host name in turn (see [`crate::replicas`]). What [`Upstream::forward`]
//! sees feeds a [`LiveSignal`]: a peer going down and coming back is logged
//! at ERROR once each, not a line per failed request.

use std::sync::Arc;
use std::time::Duration;

use actix_web::HttpResponse;
use actix_web::http::StatusCode;

use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::health::LiveSignal;
use crate::replicas::Replicas;

/// A named peer reached over HTTP.
#[derive(Debug, Clone)]
pub struct Upstream {
    name: &'static str,
    base: String,
    replicas: Option<Arc<Replicas>>,
    client: reqwest::Client,
    live: Arc<LiveSignal>,
}

/// Builds the shared client: keep-alive pool, connect timeout, no proxy
/// (services talk over the local network, never through `HTTP_PROXY`).
pub fn http_client(connect_timeout: Duration) -> reqwest::Client {
    internal_client(connect_timeout, None)
}

/// [`http_client`] that sends `internal.token` with every call, for calls to
/// chat, session and the aggregator ([`crate::internal`]).
pub fn internal_client(
    connect_timeout: Duration,
    token: Option<&crate::config::Secret>,
) -> reqwest::Client {
    reqwest::Client::builder()
        .default_headers(crate::internal::client_headers(token))
        .connect_timeout(connect_timeout)
        // Shorter than the servers' keep-alive (`server::KEEP_ALIVE`), so a
        // pooled connection is never reused just as the server closes it.
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(64)
        .tcp_nodelay(true)
        .no_proxy()
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

impl Upstream {
    /// A peer called `name` at `base` (`http://host:port`, no trailing slash needed).
    pub fn new(name: &'static str, base: &str, client: reqwest::Client) -> Self {
        Self {
            name,
            base: base.trim_end_matches('/').to_owned(),
            replicas: None,
            client,
            live: Arc::new(LiveSignal::named(name)),
        }
    }

    /// As [`Upstream::new`], spreading requests over every replica that
    /// `base`'s host name resolves to (one request each, in turn).
    pub fn spread(name: &'static str, base: &str, client: reqwest::Client) -> Self {
        Self {
            replicas: Replicas::follow(base),
            ..Self::new(name, base, client)
        }
    }

    /// The peer's name, for logs and errors.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The shared client. Prefer [`Upstream::request`] and its siblings,
    /// which carry the trace context.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// A `method` request to `path` (which starts with `/`), carrying the
    /// current span's trace context.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        crate::trace_context::inject(self.client.request(method, self.url(path)))
    }

    /// A `GET` of `path`, carrying the trace context.
    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::GET, path)
    }

    /// A `POST` to `path`, carrying the trace context.
    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::POST, path)
    }

    /// The absolute URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        match self.replicas.as_ref().and_then(|r| r.next_base()) {
            Some(replica) => format!("{replica}{path}"),
            None => format!("{}{path}", self.base),
        }
    }

    /// Maps a transport failure to 503 (unreachable) or 504 (too slow).
    pub fn transport_error(&self, error: &reqwest::Error) -> ApiError {
        let chain = crate::error::ErrorChain(error).to_string();
        tracing::debug!(upstream = self.name, error = %chain, "upstream call failed");
        self.live.failure(chain);
        if error.is_timeout() {
            ApiError::new(
                ErrorCode::UpstreamTimeout,
                format!("the {} service did not answer in time", self.name),
            )
        } else {
            ApiError::new(
                ErrorCode::ServiceUnavailable,
                format!("the {} service is unavailable", self.name),
            )
        }
    }

    /// Turns an upstream error answer into ours: our own JSON errors pass
    /// through unchanged, anything else becomes a 503 naming the peer.
    /// Its `Retry-After` (in seconds) is passed on.
    pub async fn error_from(&self, response: reqwest::Response) -> ApiError {
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        match response.json::<ErrorBody>().await {
            Ok(body) => ApiError {
                retry_after,
                ..body.error
            },
            Err(_) => {
                tracing::warn!(
                    upstream = self.name,
                    status = status.as_u16(),
                    "unexpected upstream answer"
                );
                ApiError::new(
                    ErrorCode::ServiceUnavailable,
                    format!("the {} service answered {status}", self.name),
                )
            }
        }
    }
}

/// Response header in which chat reports how long the LLM kept a request
/// waiting, in microseconds (the whole call, or the first token of a stream).
pub const LLM_WAIT_HEADER: &str = "x-chatbot-llm-wait-us";

fn llm_wait(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(LLM_WAIT_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .map(Duration::from_micros)
}

/// A successful upstream answer, ready to relay to our client.
#[derive(Debug)]
pub enum Relayed {
    /// A whole body (JSON, or empty for 204), and the LLM wait it reported.
    Whole(StatusCode, bytes::Bytes, Option<Duration>),
    /// A server-sent event stream, relayed as it arrives.
    Events(reqwest::Response),
}

impl Upstream {
    /// Sends `request` (built by [`Upstream::request`]) and reads the answer:
    /// a stream stays a stream, anything else is read whole; our JSON errors
    /// pass through, transport failures become 503 or 504.
    pub async fn forward(&self, request: reqwest::RequestBuilder) -> Result<Relayed, ApiError> {
        let response = request.send().await.map_err(|e| self.transport_error(&e))?;
        self.live.success();
        if !response.status().is_success() {
            return Err(self.error_from(response).await);
        }
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::OK);
        let is_stream = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if is_stream {
            return Ok(Relayed::Events(response));
        }
        let waited = llm_wait(response.headers());
        let body = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(&e))?;
        Ok(Relayed::Whole(status, body, waited))
    }
}

impl Relayed {
    /// How long the LLM kept the upstream waiting, when it said.
    pub fn llm_wait(&self) -> Option<Duration> {
        match self {
            Self::Whole(_, _, waited) => *waited,
            Self::Events(response) => llm_wait(response.headers()),
        }
    }

    /// The response to send to our client. If an upstream stream breaks, the
    /// client gets a final `error` event instead of a silently cut reply.
    pub fn into_response(self) -> HttpResponse {
        self.into_response_holding(())
    }

    /// [`Relayed::into_response`], keeping `held` alive until the body has
    /// been sent or the client has gone (a stream slot, for example).
    pub fn into_response_holding<T: 'static>(self, held: T) -> HttpResponse {
        use futures::StreamExt;
        match self {
            Self::Whole(status, body, _) if body.is_empty() => HttpResponse::build(status).finish(),
            Self::Whole(status, body, _) => HttpResponse::build(status)
                .content_type("application/json")
                .body(body),
            Self::Events(response) => HttpResponse::Ok()
                .content_type("text/event-stream")
                .insert_header(("Cache-Control", "no-cache"))
                .insert_header(("X-Accel-Buffering", "no"))
                .streaming(relay_events(response).map(move |chunk| {
                    let _held = &held;
                    chunk
                })),
        }
    }
}

fn relay_events(
    response: reqwest::Response,
) -> impl futures::Stream<Item = Result<bytes::Bytes, std::convert::Infallible>> {
    use futures::StreamExt;
    response.bytes_stream().scan(false, |failed, item| {
        if *failed {
            return futures::future::ready(None);
        }
        let bytes = item.unwrap_or_else(|error| {
            tracing::warn!(error = %crate::error::ErrorChain(&error), "upstream stream broke");
            *failed = true;
            let error = ApiError::new(
                ErrorCode::ServiceUnavailable,
                "the upstream service stopped in the middle of the reply",
            );
            bytes::Bytes::from(format!("\n\nevent: error\ndata: {}\n\n", error.to_json()))
        });
        futures::future::ready(Some(Ok(bytes)))
    })
}

/// Splits a byte stream (Ollama's NDJSON, chat's server-sent events) into
/// complete lines.
#[derive(Debug, Default)]
pub struct LineBuffer {
    partial: Vec<u8>,
}

impl LineBuffer {
    /// Adds `bytes`; returns the lines they complete, trimmed, blank ones
    /// left out.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        self.partial.extend_from_slice(bytes);
        let mut lines = Vec::new();
        while let Some(end) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            let line = line.trim_ascii();
            if !line.is_empty() {
                lines.push(line.to_vec());
            }
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_across_chunks_are_joined() {
        let mut buffer = LineBuffer::default();
        assert!(buffer.push(b"{\"a\":").is_empty());
        let lines = buffer.push(b"1}\n{\"b\":2}\n{\"c\"");
        assert_eq!(lines, vec![b"{\"a\":1}".to_vec(), b"{\"b\":2}".to_vec()]);
        assert_eq!(buffer.push(b":3}\n"), vec![b"{\"c\":3}".to_vec()]);
    }
}
