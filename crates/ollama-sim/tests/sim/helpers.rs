//! Starting a simulator and reading its answers.

use std::time::Duration;

use ollama_sim::{SimConfig, SimServer};
use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};

/// A running simulator and a client for it.
pub struct Harness {
    pub server: SimServer,
    pub client: reqwest::Client,
}

impl Harness {
    /// The URL of `path` on the simulator.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url())
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path} failed: {e}"))
    }

    /// `POST path` with a raw body.
    pub async fn post_raw(&self, path: &str, body: &'static str) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path} failed: {e}"))
    }

    /// `GET path`, answered with JSON.
    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(self.url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path} failed: {e}"));
        let status = response.status().as_u16();
        (status, json_body(response).await)
    }

    /// `PUT /_sim/config` with `patch`; returns the status and answer.
    pub async fn configure(&self, patch: Value) -> (u16, Value) {
        let response = self
            .client
            .put(self.url("/_sim/config"))
            .json(&patch)
            .send()
            .await
            .unwrap_or_else(|e| panic!("PUT /_sim/config failed: {e}"));
        let status = response.status().as_u16();
        (status, json_body(response).await)
    }

    /// A streamed chat: status, content type and the parsed lines.
    pub async fn chat_stream(&self, body: &Value) -> (u16, String, Vec<Value>) {
        let response = self.post("/api/chat", body).await;
        let status = response.status().as_u16();
        let content_type = content_type(&response);
        (status, content_type, ndjson(response).await)
    }

    /// A non-streamed chat: status, content type and the object.
    pub async fn chat_whole(&self, body: &Value) -> (u16, String, Value) {
        let mut body = body.clone();
        body["stream"] = json!(false);
        let response = self.post("/api/chat", &body).await;
        let status = response.status().as_u16();
        let content_type = content_type(&response);
        (status, content_type, json_body(response).await)
    }
}

/// Starts a simulator with `config`.
pub async fn start(config: SimConfig) -> Harness {
    let server = ollama_sim::spawn(config)
        .await
        .unwrap_or_else(|e| panic!("simulator did not start: {e}"));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap_or_else(|e| panic!("client: {e}"));
    Harness { server, client }
}

/// Starts a simulator with the default settings.
pub async fn start_default() -> Harness {
    start(SimConfig::default()).await
}

/// The `Content-Type` of `response`, or "".
pub fn content_type(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// The body parsed as JSON.
pub async fn json_body(response: reqwest::Response) -> Value {
    let text = response
        .text()
        .await
        .unwrap_or_else(|e| panic!("reading body: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("body is not JSON ({e}): {text}"))
}

/// The body parsed as NDJSON: every line must be one JSON object.
pub async fn ndjson(response: reqwest::Response) -> Vec<Value> {
    let text = response
        .text()
        .await
        .unwrap_or_else(|e| panic!("reading body: {e}"));
    assert!(
        text.ends_with('\n'),
        "NDJSON must end with a newline: {text:?}"
    );
    text.lines()
        .map(|line| {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("line is not JSON ({e}): {line:?}"));
            assert!(value.is_object(), "line is not an object: {line}");
            value
        })
        .collect()
}

/// The concatenated `message.content` of chat chunks.
pub fn chat_content(lines: &[Value]) -> String {
    lines
        .iter()
        .filter_map(|l| l["message"]["content"].as_str())
        .collect()
}

/// A chat request for `model` with `(role, content)` messages.
pub fn chat_body(model: &str, messages: &[(&str, &str)]) -> Value {
    let messages: Vec<Value> = messages
        .iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect();
    json!({"model": model, "messages": messages})
}

/// Checks `value` is an RFC 3339 UTC timestamp with nanoseconds.
pub fn assert_timestamp(value: &Value) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("timestamp is not a string: {value}"));
    assert!(
        chrono::DateTime::parse_from_rfc3339(text).is_ok(),
        "not RFC 3339: {text}"
    );
    assert!(text.ends_with('Z'), "not UTC: {text}");
    let fraction = text
        .split_once('.')
        .map(|(_, f)| f.trim_end_matches('Z'))
        .unwrap_or_default();
    assert_eq!(fraction.len(), 9, "not nanoseconds: {text}");
}

/// The unsigned integer field `key` of `value`.
pub fn uint(value: &Value, key: &str) -> u64 {
    value[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not an unsigned integer in {value}"))
}
