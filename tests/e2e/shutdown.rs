//! Graceful shutdown: SIGTERM lets an in-flight streamed reply finish and
//! store its exchange before the process exits cleanly, and refuses new
//! requests meanwhile; an exchange still running when the grace period ends
//! is cut, and its message is stored with an error.

use reqwest::StatusCode;
use serde_json::json;
use test_support::app::{connect, parse_sse};
use test_support::shared_redis;

use crate::Stack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_an_in_flight_stream() {
    // About 2 s of tokens, so the signal lands in the middle of the reply.
    let stack = Stack::start(&[
        ("OLLAMA_SIM_TOKENS_PER_SEC", "10".into()),
        ("OLLAMA_SIM_REPLY_TOKENS", "20".into()),
    ])
    .await;
    let (mut response, mut body) = start_stream(&stack, "drain", "a long answer please").await;
    let Stack {
        mut chat, db_url, ..
    } = stack;

    let chat_url = chat.base_url();
    let stopping = tokio::task::spawn_blocking(move || {
        let status = chat.terminate();
        (status, chat.logs())
    });
    // While draining, a new request is refused (the body here would be a
    // 422 otherwise) and its connection closed; liveness still answers.
    let refused = refused_while_draining(&chat_url).await;
    assert_eq!(refused.0, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.1.as_deref(), Some("close"));
    assert_eq!(
        refused.2["error"]["code"], "service_unavailable",
        "{:?}",
        refused.2
    );
    let live = reqwest::get(format!("{chat_url}/livez")).await.unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    while let Some(chunk) = response.chunk().await.unwrap() {
        body.push_str(&String::from_utf8_lossy(&chunk));
    }
    let events = parse_sse(&body);
    let (status, logs) = stopping.await.unwrap();
    assert_eq!(
        events.last().map(|(n, _)| n.as_str()),
        Some("done"),
        "{body}\n{logs:#?}"
    );
    assert!(status.success(), "chat exited with {status}: {logs:?}");
    assert!(
        logs.iter().any(|l| l.contains("shutdown requested")),
        "{logs:?}"
    );

    let db = connect(&db_url).await;
    let stored = db
        .query_one(
            "SELECT count(*) FROM messages WHERE user_id = 'drain' AND error IS NULL",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        stored.get::<_, i64>(0),
        1,
        "the drained exchange was stored"
    );
}

/// Sends an empty chat request until one is refused (within 2 s); returns
/// its status, `Connection` header and body.
async fn refused_while_draining(chat_url: &str) -> (StatusCode, Option<String>, serde_json::Value) {
    for _ in 0..100 {
        let answer = reqwest::Client::new()
            .post(format!("{chat_url}/chat"))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        if answer.status() == StatusCode::SERVICE_UNAVAILABLE {
            let connection = answer
                .headers()
                .get("connection")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            return (answer.status(), connection, answer.json().await.unwrap());
        }
        assert_eq!(answer.status(), StatusCode::UNPROCESSABLE_ENTITY);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("no request was refused within 2 s of SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exchange_cut_by_the_end_of_the_grace_period_is_stored_with_an_error() {
    // About 10 s of tokens against a 1 s grace period.
    let stack = Stack::start_configured(
        &shared_redis().url(),
        &[
            ("OLLAMA_SIM_TOKENS_PER_SEC", "2".into()),
            ("OLLAMA_SIM_REPLY_TOKENS", "20".into()),
        ],
        &[("CHATBOT__CHAT__SERVER__SHUTDOWN_GRACE_SECS", "1".into())],
    )
    .await;
    let (mut response, mut body) = start_stream(&stack, "cut", "a very long answer please").await;
    let Stack {
        mut chat, db_url, ..
    } = stack;

    let started = std::time::Instant::now();
    let (status, logs) = tokio::task::spawn_blocking(move || (chat.terminate(), chat.logs()))
        .await
        .unwrap();
    assert!(status.success(), "chat exited with {status}: {logs:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(6),
        "stopped {:?} after SIGTERM, with a 1 s grace period",
        started.elapsed()
    );
    while let Ok(Some(chunk)) = response.chunk().await {
        body.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert_eq!(
        parse_sse(&body).last().map(|(n, _)| n.as_str()),
        Some("error"),
        "the client is told the reply broke off: {body}"
    );

    let db = connect(&db_url).await;
    let row = db
        .query_one(
            "SELECT message, reply, error_code, error FROM messages WHERE user_id = 'cut'",
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("the cut exchange was not stored ({e}): {logs:#?}"));
    assert_eq!(row.get::<_, String>("message"), "a very long answer please");
    assert_eq!(row.get::<_, Option<String>>("reply"), None);
    assert_eq!(
        row.get::<_, Option<String>>("error_code").as_deref(),
        Some("service_unavailable")
    );
    assert!(
        row.get::<_, Option<String>>("error")
            .unwrap()
            .contains("stopped before the reply was complete")
    );
}

/// Starts a streamed chat through the gateway and reads its first chunk.
async fn start_stream(stack: &Stack, user: &str, message: &str) -> (reqwest::Response, String) {
    let mut response = stack
        .http
        .post(format!("{}/api/chat", stack.gateway.base_url()))
        .json(&json!({"user_id": user, "message": message, "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = String::from_utf8(response.chunk().await.unwrap().unwrap().to_vec()).unwrap();
    assert!(
        body.contains("event: token"),
        "the reply has started: {body}"
    );
    (response, body)
}
