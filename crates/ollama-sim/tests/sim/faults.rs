//! Injected latency and faults.

use std::time::{Duration, Instant};

use ollama_sim::SimConfig;
use serde_json::json;

use crate::helpers::{chat_body, chat_content, json_body, ndjson, start, start_default};

const MODEL: &str = "llama3.2:1b";

#[tokio::test]
async fn error_rate_one_fails_every_generation_with_500() {
    let h = start(SimConfig {
        error_rate: 1.0,
        ..SimConfig::default()
    })
    .await;
    for _ in 0..3 {
        let response = h
            .post("/api/chat", &chat_body(MODEL, &[("user", "x")]))
            .await;
        assert_eq!(response.status().as_u16(), 500);
        assert_eq!(
            json_body(response).await,
            json!({"error": "simulated failure"})
        );
    }
    let response = h
        .post(
            "/api/generate",
            &json!({"model": MODEL, "prompt": "x", "stream": false}),
        )
        .await;
    assert_eq!(response.status().as_u16(), 500);

    // Validation comes first: an unknown model is still a 404.
    let response = h
        .post("/api/chat", &chat_body("nope", &[("user", "x")]))
        .await;
    assert_eq!(response.status().as_u16(), 404);

    let stats = h.server.sim().stats();
    assert_eq!(stats.injected_errors, 4);
    assert_eq!(stats.generations_started, 0);
    let (_, version) = h.get_json("/api/version").await;
    assert!(
        version["version"].is_string(),
        "other routes are unaffected"
    );
}

#[tokio::test]
async fn error_rate_half_fails_every_second_request() {
    let h = start(SimConfig {
        error_rate: 0.5,
        ..SimConfig::default()
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let response = h
            .post("/api/chat", &chat_body(MODEL, &[("user", "x")]))
            .await;
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [200, 500, 200, 500]);
}

#[tokio::test]
async fn mid_stream_error_ends_the_stream_with_an_error_line() {
    let h = start(SimConfig {
        mid_stream_error_after: Some(3),
        ..SimConfig::default()
    })
    .await;
    let response = h
        .post("/api/chat", &chat_body(MODEL, &[("user", "tell me")]))
        .await;
    assert_eq!(response.status().as_u16(), 200, "headers were already sent");
    let lines = ndjson(response).await;
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(lines[..3].iter().all(|l| l["done"] == false));
    assert_eq!(chat_content(&lines[..3]), "Echo: tell me.");
    assert_eq!(lines[3], json!({"error": "simulated failure mid-stream"}));

    let response = h
        .post("/api/generate", &json!({"model": MODEL, "prompt": "p"}))
        .await;
    let lines = ndjson(response).await;
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[3], json!({"error": "simulated failure mid-stream"}));

    // Not streamed: the error is the whole answer, as Ollama does.
    let (status, _, body) = h.chat_whole(&chat_body(MODEL, &[("user", "x")])).await;
    assert_eq!(status, 500);
    assert_eq!(body, json!({"error": "simulated failure mid-stream"}));

    let stats = h.server.sim().stats();
    assert_eq!(stats.mid_stream_errors, 3);
    assert_eq!(stats.generations_completed, 0);
}

#[tokio::test]
async fn mid_stream_error_after_the_whole_reply_replaces_the_final_object() {
    let h = start(SimConfig {
        mid_stream_error_after: Some(100),
        ..SimConfig::default()
    })
    .await;
    let response = h
        .post("/api/chat", &chat_body(MODEL, &[("user", "x")]))
        .await;
    let lines = ndjson(response).await;
    assert_eq!(lines.len(), 13);
    assert_eq!(lines[12], json!({"error": "simulated failure mid-stream"}));
}

#[tokio::test]
async fn hang_times_out_the_client_while_other_routes_answer() {
    let h = start(SimConfig {
        hang: true,
        ..SimConfig::default()
    })
    .await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap_or_else(|e| panic!("{e}"));

    let chat_url = h.url("/api/chat");
    let body = chat_body(MODEL, &[("user", "anyone there?")]);
    let hung = tokio::spawn({
        let impatient = impatient.clone();
        let body = body.clone();
        async move {
            let started = Instant::now();
            let result = impatient.post(chat_url).json(&body).send().await;
            (started.elapsed(), result)
        }
    });

    // While the chat is held (the server never lets it go), other requests
    // are answered.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let version = h
        .client
        .get(h.url("/api/version"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("/api/version did not answer during a hang: {e}"));
    assert_eq!(version.status().as_u16(), 200);

    let (elapsed, result) = hung.await.unwrap_or_else(|e| panic!("{e}"));
    let error = match result {
        Ok(response) => panic!("a hung request was answered: {}", response.status()),
        Err(error) => error,
    };
    assert!(error.is_timeout(), "expected a timeout, got {error}");
    assert!(elapsed >= Duration::from_millis(290), "{elapsed:?}");
    assert_eq!(h.server.sim().stats().hung_requests, 1);

    // Turning hang off lets new requests through.
    let (status, config) = h.configure(json!({"hang": false})).await;
    assert_eq!(status, 200);
    assert_eq!(config["hang"], false);
    let response = impatient
        .post(h.url("/api/chat"))
        .json(&json!({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "stream": false}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("after hang: {e}"));
    assert_eq!(response.status().as_u16(), 200);
}

#[tokio::test]
async fn turning_hang_off_lets_new_requests_through_but_never_answers_held_ones() {
    let h = start(SimConfig {
        hang: true,
        ..SimConfig::default()
    })
    .await;
    let client = h.client.clone();
    let url = h.url("/api/chat");
    let body = chat_body(MODEL, &[("user", "wait")]);
    let held = tokio::spawn(async move { client.post(url).json(&body).send().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!held.is_finished());

    h.server
        .sim()
        .update_config(|c| c.hang = false)
        .unwrap_or_else(|e| panic!("{e}"));
    let (status, _, whole) = h.chat_whole(&chat_body(MODEL, &[("user", "next")])).await;
    assert_eq!(status, 200);
    assert!(
        whole["message"]["content"]
            .as_str()
            .is_some_and(|c| c.starts_with("Echo: next."))
    );

    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!held.is_finished(), "a held request is never answered");
    held.abort();
    let stats = h.server.sim().stats();
    assert_eq!(stats.hung_requests, 1);
    assert_eq!(
        stats.generations_started, 1,
        "only the new request generated"
    );
}

#[tokio::test]
async fn latency_settings_delay_and_pace_tokens() {
    let h = start(SimConfig {
        first_token_ms: 150,
        slow_start_ms: 100,
        tokens_per_sec: 100.0,
        ..SimConfig::default()
    })
    .await;
    let started = Instant::now();
    let response = h
        .post("/api/chat", &chat_body(MODEL, &[("user", "x")]))
        .await;
    let headers_after = started.elapsed();
    let lines = ndjson(response).await;
    let total = started.elapsed();
    assert!(
        headers_after >= Duration::from_millis(250),
        "first token after first_token_ms + slow_start_ms: {headers_after:?}"
    );
    // 11 gaps of 10 ms between 12 tokens.
    assert!(total >= Duration::from_millis(250 + 110), "{total:?}");
    let last = lines.last().cloned().unwrap_or_default();
    assert!(last["prompt_eval_duration"].as_u64().unwrap_or(0) >= 250_000_000);
    assert!(last["eval_duration"].as_u64().unwrap_or(0) >= 110_000_000);

    // Non-streamed answers wait as long.
    let started = Instant::now();
    let (status, _, _) = h.chat_whole(&chat_body(MODEL, &[("user", "x")])).await;
    assert_eq!(status, 200);
    assert!(started.elapsed() >= Duration::from_millis(360));
}

#[tokio::test]
async fn defaults_answer_fast() {
    let h = start_default().await;
    let started = Instant::now();
    for _ in 0..20 {
        let (status, _, _) = h.chat_whole(&chat_body(MODEL, &[("user", "x")])).await;
        assert_eq!(status, 200);
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}
