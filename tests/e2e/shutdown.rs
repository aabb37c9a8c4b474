//! Graceful shutdown: SIGTERM lets an in-flight streamed reply finish and
//! store its exchange before the process exits cleanly.

use reqwest::StatusCode;
use serde_json::json;
use test_support::app::{connect, parse_sse};

use crate::Stack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_an_in_flight_stream() {
    // About 2 s of tokens, so the signal lands in the middle of the reply.
    let stack = Stack::start(&[
        ("OLLAMA_SIM_TOKENS_PER_SEC", "10".into()),
        ("OLLAMA_SIM_REPLY_TOKENS", "20".into()),
    ])
    .await;
    let Stack {
        sim: _sim,
        session: _session,
        mut chat,
        gateway,
        aggregator: _agg,
        db_url,
        http,
    } = stack;
    let mut response = http
        .post(format!("{}/api/chat", gateway.base_url()))
        .json(&json!({"user_id": "drain", "message": "a long answer please", "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = String::from_utf8(response.chunk().await.unwrap().unwrap().to_vec()).unwrap();
    assert!(
        body.contains("event: token"),
        "the reply has started: {body}"
    );

    let stopping = tokio::task::spawn_blocking(move || {
        let status = chat.terminate();
        (status, chat.logs())
    });
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
