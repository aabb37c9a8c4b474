//! In-process services for a crate's integration tests.
//!
//! [`settings`] gives a configuration where every listener binds port 0 on
//! 127.0.0.1 with one worker, [`settings_on_redis`] the same with a Redis
//! and a key prefix of their own, [`backed_settings`] adds a fresh database and
//! an Ollama simulator; [`serve`] runs a built service on the test's
//! runtime and returns its base URL.

use chatbot_common::config::Settings;
use chatbot_common::server::RunningService;

/// Settings for tests: every service on port 0 with one worker, quiet logs,
/// dependency URLs pointing nowhere until the test sets them, and API keys
/// off (a crate's tests look at their own concern; the gateway's `auth`
/// tests and the end-to-end stack run with keys on).
pub fn settings() -> Settings {
    let mut s = Settings::default();
    for server in [
        &mut s.gateway.server,
        &mut s.chat.server,
        &mut s.session.server,
        &mut s.aggregator.server,
    ] {
        server.port = 0;
        server.workers = 1;
        server.shutdown_grace_secs = 5;
        // `/metrics` on the main listener: one URL per service in tests.
        server.metrics_port = None;
    }
    s.log.level = "warn".into();
    s.auth.enabled = false;
    s.chat.outbox.path = crate::process::unique_outbox().into();
    s
}

/// [`settings`] on the Redis at `url`, with a key prefix of their own (so
/// tests sharing a server never see each other's sessions).
pub fn settings_on_redis(url: &str) -> Settings {
    let mut s = settings();
    s.redis.url = url.into();
    s.session.key_prefix = crate::fresh_prefix();
    s
}

/// What a service under test stands on: [`settings_on_redis`] with a fresh
/// database, and an Ollama simulator the settings point at.
pub async fn backed_settings(redis_url: &str) -> (Settings, ollama_sim::SimServer) {
    let sim = ollama_sim::spawn(ollama_sim::SimConfig::default())
        .await
        .unwrap_or_else(|e| panic!("the Ollama simulator did not start: {e}"));
    let mut s = settings_on_redis(redis_url);
    s.database.url = fresh_database_url().await.as_str().into();
    s.ollama.url = sim.url();
    (s, sim)
}

/// User turns with `texts` as their contents, stamped now.
pub fn user_turns(texts: &[&str]) -> Vec<chatbot_common::api::Turn> {
    texts
        .iter()
        .map(|text| chatbot_common::api::Turn {
            role: chatbot_common::api::Role::User,
            content: (*text).to_owned(),
            message_id: None,
            created_at: chrono::Utc::now(),
        })
        .collect()
}

/// Runs `service` in the background and returns `http://127.0.0.1:PORT`.
pub fn serve(service: RunningService) -> String {
    let url = format!("http://{}", service.addr());
    tokio::spawn(service.run_until_stopped());
    url
}

/// A fresh database on the shared PostgreSQL, as a [`chatbot_common::config::Secret`]-ready URL.
pub async fn fresh_database_url() -> String {
    crate::shared_postgres().fresh_database().await
}

/// Sends a JSON body and returns the status and the parsed JSON answer
/// (`Value::Null` when the body is empty or not JSON).
pub async fn send_json(
    request: reqwest::RequestBuilder,
) -> (reqwest::StatusCode, serde_json::Value) {
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("request failed: {e}"));
    let status = response.status();
    let body = response.bytes().await.unwrap_or_default();
    let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    (status, json)
}

/// Connects to PostgreSQL at `url` (the connection task runs on the current
/// runtime). Panics when it cannot connect.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// Parsed server-sent events: `(event name, data)` pairs in order.
pub fn parse_sse(body: &str) -> Vec<(String, String)> {
    body.split("\n\n")
        .filter_map(|frame| {
            let mut name = None;
            let mut data = Vec::new();
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    name = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push(v);
                }
            }
            name.map(|n| (n, data.join("\n")))
        })
        .collect()
}

/// Posts `{"user_id":"u","message":"slow one"}` to `url`, and 300 ms later
/// a second chat: with room for one exchange (and a slow LLM) the second is
/// the one shed. Returns the first's status and the second's response.
pub async fn one_too_many(
    http: &reqwest::Client,
    url: &str,
) -> (reqwest::StatusCode, reqwest::Response) {
    let send = |message: &str| {
        http.post(url)
            .json(&serde_json::json!({"user_id": "u", "message": message}))
            .send()
    };
    let slow = send("slow one");
    let shed = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        send("one too many").await
    };
    let (slow, shed) = tokio::join!(slow, shed);
    let ok = |r: reqwest::Result<reqwest::Response>| {
        r.unwrap_or_else(|e| panic!("test-support: {url}: {e}"))
    };
    (ok(slow).status(), ok(shed))
}

/// Opens a connection to `base` (`http://host:port`), writes `bytes` and
/// reads until the server closes it, for up to `timeout`; `None` if it
/// stays open that long. For clients that stall mid-request.
pub async fn raw_until_closed(
    base: &str,
    bytes: &[u8],
    timeout: std::time::Duration,
) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("test-support: connect {addr}: {e}"));
    socket
        .write_all(bytes)
        .await
        .unwrap_or_else(|e| panic!("test-support: write to {addr}: {e}"));
    let mut answer = Vec::new();
    tokio::time::timeout(timeout, socket.read_to_end(&mut answer))
        .await
        .ok()?
        .ok()?;
    Some(String::from_utf8_lossy(&answer).into_owned())
}
