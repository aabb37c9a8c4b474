//! No secret reaches a log line, an error body, `/health` or `/metrics`: a
//! whole stack runs with a database password, an internal token and an API
//! key it knows, takes good and bad requests, and everything it wrote is
//! searched for each of them.

use reqwest::StatusCode;
use serde_json::json;

use crate::Stack;

const DB_PASSWORD: &str = "db-password-that-must-not-leak";
const INTERNAL_TOKEN: &str = "internal-token-that-must-not-leak";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_logs_answers_or_metrics() {
    let secrets = [
        ("CHATBOT__DATABASE__PASSWORD", DB_PASSWORD.to_owned()),
        ("CHATBOT__INTERNAL__TOKEN", INTERNAL_TOKEN.to_owned()),
        ("CHATBOT__LOG__LEVEL", "debug".to_owned()),
    ];
    let stack = Stack::start_configured(&test_support::shared_redis().url(), &[], &secrets).await;
    let gateway = stack.gateway.base_url();
    let (status, _) = stack
        .chat(json!({"user_id": "s", "message": "hello"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let anonymous = reqwest::Client::new();
    let mut answers = Vec::new();
    for (authorization, path) in [
        (format!("Bearer {}x", stack.api_key), "/api/chat"),
        (format!("Bearer {INTERNAL_TOKEN}"), "/api/chat"),
        (
            stack.api_key.clone(),
            "/api/sessions/00000000-0000-4000-8000-000000000000",
        ),
    ] {
        let answer = anonymous
            .post(format!("{gateway}{path}"))
            .header("authorization", authorization)
            .json(&json!({"user_id": "s", "message": "hello"}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
        answers.push(answer.text().await.unwrap());
    }
    // Internal services called without the token, and with a wrong one.
    for service in [&stack.chat, &stack.session, &stack.aggregator] {
        let answer = anonymous
            .get(format!("{}/stats", service.base_url()))
            .header("authorization", format!("Bearer {}", stack.api_key))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
        answers.push(answer.text().await.unwrap());
    }
    for url in [
        format!("{gateway}/health"),
        format!("{}/metrics", stack.gateway.metrics_url()),
        format!("{}/metrics/all", stack.aggregator.base_url()),
    ] {
        answers.push(
            stack
                .http
                .get(url)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        );
    }
    let logs: Vec<String> = [
        &stack.gateway,
        &stack.chat,
        &stack.session,
        &stack.aggregator,
    ]
    .iter()
    .flat_map(|service| service.logs())
    .collect();
    assert!(logs.len() > 20, "the services logged: {}", logs.len());
    let everything = format!("{}\n{}", logs.join("\n"), answers.join("\n"));
    for (name, secret) in [
        ("the database password", DB_PASSWORD),
        ("the internal token", INTERNAL_TOKEN),
        ("the API key", stack.api_key.as_str()),
        ("the API key's secret part", &stack.api_key[12..]),
    ] {
        assert!(!everything.contains(secret), "{name} leaked");
    }
}
