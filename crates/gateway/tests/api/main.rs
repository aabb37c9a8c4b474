//! Integration tests of the public API: the gateway in front of the real chat
//! and session services (in this process, port 0), real PostgreSQL and Redis,
//! and the Ollama simulator.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod auth;
mod health;

use chatbot_common::config::Settings;
use reqwest::StatusCode;
use serde_json::{Value, json};
use test_support::app::{backed_settings, parse_sse, send_json, serve};
use test_support::shared_redis;

struct Gateway {
    url: String,
    http: reqwest::Client,
    sim: ollama_sim::SimServer,
}

impl Gateway {
    /// The whole path behind a gateway; `tweak` adjusts the gateway's settings.
    async fn start(tweak: impl FnOnce(&mut Settings)) -> Self {
        let (mut s, sim) = backed_settings(&shared_redis().url()).await;
        let session = serve(session::build(&s).unwrap());
        s.gateway.session_url = session;
        s.gateway.chat_url = serve(chat::build(&s).await.unwrap());
        tweak(&mut s);
        Self {
            url: serve(gateway::build(&s).unwrap()),
            http: reqwest::Client::new(),
            sim,
        }
    }

    /// As [`Gateway::start`], with `tweak` applied to every service's
    /// settings before any starts.
    async fn start_all(tweak: impl FnOnce(&mut Settings)) -> Self {
        let (mut s, sim) = backed_settings(&shared_redis().url()).await;
        tweak(&mut s);
        s.gateway.session_url = serve(session::build(&s).unwrap());
        s.gateway.chat_url = serve(chat::build(&s).await.unwrap());
        Self {
            url: serve(gateway::build(&s).unwrap()),
            http: reqwest::Client::new(),
            sim,
        }
    }

    async fn chat(&self, body: Value) -> (StatusCode, Value) {
        send_json(self.http.post(format!("{}/api/chat", self.url)).json(&body)).await
    }

    async fn raw(&self, body: &'static str) -> (StatusCode, Value) {
        send_json(self.http.post(format!("{}/api/chat", self.url)).body(body)).await
    }
}

fn code(answer: &Value) -> &str {
    answer["error"]["code"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_session_read_and_delete_through_the_gateway() {
    let gw = Gateway::start(|_| {}).await;
    let (status, first) = gw
        .chat(json!({"user_id": "ann", "message": "I love this"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["type"], "feedback");
    let id = first["session_id"].as_str().unwrap();
    let (_, second) = gw
        .chat(json!({"user_id": "ann", "message": "and more", "session_id": id}))
        .await;
    assert!(
        second["reply"]
            .as_str()
            .unwrap()
            .contains("(first: \"I love this\")")
    );

    let (status, session) = send_json(gw.http.get(format!("{}/api/sessions/{id}", gw.url))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(session["turns"].as_array().unwrap().len(), 4);

    let deleted = gw
        .http
        .delete(format!("{}/api/sessions/{id}", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let (status, answer) = send_json(gw.http.get(format!("{}/api/sessions/{id}", gw.url))).await;
    assert_eq!(
        (status, code(&answer)),
        (StatusCode::NOT_FOUND, "session_not_found")
    );
    let (status, answer) = gw
        .chat(json!({"user_id": "ann", "message": "still there?", "session_id": id}))
        .await;
    assert_eq!(
        (status, code(&answer)),
        (StatusCode::NOT_FOUND, "session_not_found")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_is_relayed_event_by_event() {
    let gw = Gateway::start(|_| {}).await;
    let response = gw
        .http
        .post(format!("{}/api/chat", gw.url))
        .json(&json!({"user_id": "bo", "message": "stream please", "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events = parse_sse(&response.text().await.unwrap());
    assert!(events.iter().filter(|(n, _)| n == "token").count() >= 12);
    let done: Value = serde_json::from_str(&events.last().unwrap().1).unwrap();
    assert!(
        done["reply"]
            .as_str()
            .unwrap()
            .starts_with("Echo: stream please.")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_the_documented_errors() {
    let gw = Gateway::start(|s| s.gateway.max_body_bytes = 1024).await;
    assert_eq!(gw.raw("{\"user_id\": ").await.0, StatusCode::BAD_REQUEST);
    let (status, answer) = gw.raw("").await;
    assert_eq!(
        (status, code(&answer)),
        (StatusCode::BAD_REQUEST, "malformed_json")
    );
    let big = json!({"user_id": "u", "message": "x".repeat(2000)});
    let (status, answer) = gw.chat(big).await;
    assert_eq!(
        (status, code(&answer)),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );
    let (status, answer) = gw.chat(json!({"user_id": "u", "message": " \n "})).await;
    assert_eq!(
        (status, code(&answer)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request")
    );
    let (status, answer) = gw.chat(json!({"message": "hi"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("user_id")
    );
    let (status, answer) = send_json(gw.http.get(format!("{}/api/sessions/xyz", gw.url))).await;
    assert_eq!(
        (status, code(&answer)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request")
    );
    let (status, answer) = send_json(gw.http.get(format!("{}/api/nothing", gw.url))).await;
    assert_eq!(
        (status, code(&answer)),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let (status, answer) = send_json(gw.http.get(format!("{}/api/chat", gw.url))).await;
    assert_eq!(
        (status, code(&answer)),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_chat_service_is_a_503() {
    let closed = test_support::free_port();
    let gw = Gateway::start(|s| s.gateway.chat_url = format!("http://127.0.0.1:{closed}")).await;
    let (status, answer) = gw.chat(json!({"user_id": "u", "message": "hello"})).await;
    assert_eq!(
        (status, code(&answer)),
        (StatusCode::SERVICE_UNAVAILABLE, "service_unavailable")
    );
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("chat")
    );
    let ready = gw
        .http
        .get(format!("{}/readyz", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_exactly_the_public_routes() {
    let gw = Gateway::start(|s| s.chat.max_message_chars = 777).await;
    let (status, doc) = send_json(gw.http.get(format!("{}/openapi.json", gw.url))).await;
    assert_eq!(status, StatusCode::OK);
    let mut paths: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    paths.sort_unstable();
    assert_eq!(
        paths,
        [
            "/api/chat",
            "/api/sessions/{id}",
            "/health",
            "/livez",
            "/metrics",
            "/ollama",
            "/ollama/api/chat",
            "/ollama/api/generate",
            "/ollama/api/tags",
            "/ollama/api/version",
            "/openapi.json",
            "/readyz",
            "/v1/chat/completions",
            "/v1/models",
            "/v1/models/{model}"
        ]
    );
    let schemas = &doc["components"]["schemas"];
    for limited in [
        &schemas["ChatRequest"]["properties"]["message"],
        &schemas["openai.UserText"],
        &schemas["ollama.GenerateRequest"]["properties"]["prompt"],
    ] {
        assert_eq!(
            limited["maxLength"], 777,
            "the document follows the configured limit"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_reports_its_overhead_without_the_llm_time() {
    let gw = Gateway::start(|_| {}).await;
    gw.sim
        .sim()
        .update_config(|c| c.first_token_ms = 300)
        .unwrap();
    let overhead = |response: &reqwest::Response| -> f64 {
        let header = response.headers()["x-chatbot-overhead-ms"]
            .to_str()
            .unwrap();
        header.parse().unwrap()
    };
    let started = std::time::Instant::now();
    let response = gw
        .http
        .post(format!("{}/api/chat", gw.url))
        .json(&json!({"user_id": "o", "message": "hello"}))
        .send()
        .await
        .unwrap();
    let total_ms = started.elapsed().as_secs_f64() * 1000.0;
    let json_overhead = overhead(&response);
    assert!(total_ms >= 300.0, "the LLM took 300 ms");
    assert!(
        (0.0..total_ms - 300.0).contains(&json_overhead),
        "the overhead {json_overhead} ms excludes the LLM's 300 ms of {total_ms} ms"
    );
    let streamed = gw
        .http
        .post(format!("{}/api/chat", gw.url))
        .json(&json!({"user_id": "o", "message": "hello", "stream": true}))
        .send()
        .await
        .unwrap();
    assert!(overhead(&streamed) >= 0.0);
    let metrics = gw
        .http
        .get(format!("{}/metrics", gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for mode in ["json", "stream"] {
        let line = format!("chatbot_gateway_overhead_seconds_count{{mode=\"{mode}\"}}");
        assert!(metrics.lines().any(|l| l.starts_with(&line)), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_metrics_port_metrics_leave_the_public_listener() {
    let (mut s, _sim) = backed_settings(&shared_redis().url()).await;
    s.gateway.server.metrics_port = Some(0);
    let service = gateway::build(&s).unwrap();
    let metrics = format!("http://{}/metrics", service.metrics_addr());
    let url = serve(service);
    let http = reqwest::Client::new();
    let public = http.get(format!("{url}/metrics")).send().await.unwrap();
    assert_eq!(public.status(), StatusCode::NOT_FOUND);
    let scraped = http.get(&metrics).send().await.unwrap();
    assert_eq!(scraped.status(), StatusCode::OK);
    assert!(
        scraped
            .text()
            .await
            .unwrap()
            .contains("process_resident_memory_bytes")
    );
    let (_, doc) = send_json(http.get(format!("{url}/openapi.json"))).await;
    assert!(
        doc["paths"].get("/metrics").is_none(),
        "not in the public document"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_shedding_load_is_a_503_whose_retry_after_reaches_the_client() {
    let gw = Gateway::start_all(|s| s.chat.max_inflight = 1).await;
    gw.sim
        .sim()
        .update_config(|c| c.first_token_ms = 1_000)
        .unwrap();
    let (status, shed) =
        test_support::app::one_too_many(&gw.http, &format!("{}/api/chat", gw.url)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(shed.headers()["retry-after"], "1");
    let body: Value = shed.json().await.unwrap();
    assert_eq!(code(&body), "overloaded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let gw = Gateway::start(|_| {}).await;
    let head = b"POST /api/chat HTTP/1.1\r\nHost: x\r\n";
    let answer =
        test_support::app::raw_until_closed(&gw.url, head, std::time::Duration::from_secs(15))
            .await
            .expect("the connection was never closed");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
}
