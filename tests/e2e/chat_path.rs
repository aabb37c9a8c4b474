//! The chat path through real processes: replies, streaming, session
//! continuity, the stored row, clear errors, and the LLM going down.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use test_support::app::{connect, parse_sse, send_json};

use crate::Stack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_through_the_gateway() {
    let mut stack = Stack::start(&[]).await;

    let (status, first) = stack
        .chat(json!({"user_id": "e2e-user", "message": "Hello! My order #123 never arrived"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert!(
        first["reply"]
            .as_str()
            .unwrap()
            .starts_with("Echo: Hello! My order #123 never arrived.")
    );
    let session = first["session_id"].as_str().unwrap().to_owned();

    let response = stack
        .http
        .post(format!("{}/api/chat", stack.gateway.base_url()))
        .json(&json!({"user_id": "e2e-user", "message": "Any news?", "session_id": session, "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let events = parse_sse(&response.text().await.unwrap());
    let (name, data) = events.last().unwrap();
    assert_eq!(name, "done");
    let second: Value = serde_json::from_str(data).unwrap();
    assert_eq!(second["session_id"].as_str().unwrap(), session);
    assert!(
        second["reply"].as_str().unwrap().contains(
            "Context: 2 earlier messages (first: \"Hello! My order #123 never arrived\")"
        ),
        "the second message's context holds the first: {second}"
    );

    let db = connect(&stack.db_url).await;
    let rows = db
        .query("SELECT message, reply, streamed, error FROM messages WHERE session_id = $1::text::uuid ORDER BY timestamp", &[&session])
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[0].get::<_, String>(0),
        "Hello! My order #123 never arrived"
    );
    assert_eq!(
        rows[1].get::<_, Option<String>>(1).as_deref(),
        second["reply"].as_str()
    );
    assert!(rows[1].get::<_, bool>(2));
    assert_eq!(rows[1].get::<_, Option<String>>(3), None);

    let (status, stored) = send_json(stack.http.get(format!(
        "{}/api/sessions/{session}",
        stack.gateway.base_url()
    )))
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stored["turns"].as_array().unwrap().len(), 4);

    let (status, answer) = stack
        .chat(json!({"user_id": "e2e-user", "message": ""}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer["error"]["code"], "invalid_request");

    // The aggregator sees every service ready, then the LLM going away.
    let health = format!("{}/health", stack.aggregator.base_url());
    assert_eq!(
        wait_for_status(&stack.http, &health, "OK").await["services"]["chat"]["status"],
        "OK"
    );
    let (status, relayed) = send_json(
        stack
            .http
            .get(format!("{}/health", stack.gateway.base_url())),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the gateway relays the verdict: {relayed}"
    );
    assert_eq!(relayed["status"], "OK");
    assert_eq!(
        relayed["services"]["redis"]["status"], "OK",
        "an admin key sees the details: {relayed}"
    );
    let (_, anonymous) =
        send_json(reqwest::Client::new().get(format!("{}/health", stack.gateway.base_url()))).await;
    assert_eq!(anonymous["status"], "OK");
    assert!(
        anonymous.get("services").is_none() && anonymous.get("checks").is_none(),
        "anonymous callers see the status only: {anonymous}"
    );
    stack.llm.terminate();
    let (status, answer) = stack
        .chat(json!({"user_id": "e2e-user", "message": "are you there?"}))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert_eq!(answer["error"]["code"], "llm_unavailable");
    let failed = db
        .query_one(
            "SELECT error_code FROM messages WHERE message = 'are you there?'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        failed.get::<_, Option<String>>(0).as_deref(),
        Some("llm_unavailable")
    );
    let verdict = wait_for_status(&stack.http, &health, "ERROR").await;
    assert_eq!(verdict["services"]["chat"]["status"], "ERROR");
    assert_eq!(verdict["services"]["ollama"]["status"], "ERROR");
    assert_eq!(verdict["services"]["gateway"]["status"], "OK");
}

pub(crate) async fn wait_for_status(http: &reqwest::Client, url: &str, status: &str) -> Value {
    let what = format!("{url} to report {status}");
    test_support::poll::until(&what, Duration::from_secs(10), || async {
        let verdict = send_json(http.get(url)).await.1;
        (verdict["status"] == status).then_some(verdict)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_configuration_fails_start_up_with_one_clear_line() {
    let binary = test_support::process::binary_path("gateway");
    let output = std::process::Command::new(binary)
        .env("CHATBOT_CONFIG_DIR", crate::repo_root().join("config"))
        .env("CHATBOT__GATEWAY__MAX_BODY_BYTES", "lots")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("gateway.max_body_bytes"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_migrate_applies_the_schema_once() {
    let db_url = test_support::shared_postgres().fresh_database().await;
    let migrate = || {
        std::process::Command::new(test_support::process::binary_path("chat"))
            .arg("migrate")
            .env("CHATBOT_CONFIG_DIR", crate::repo_root().join("config"))
            .env("CHATBOT__DATABASE__URL", &db_url)
            .output()
            .unwrap()
    };
    let first = migrate();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(String::from_utf8_lossy(&first.stdout).contains("\"applied\":\"[1, 2, 3]\""));
    let second = migrate();
    assert!(second.status.success());
    assert!(
        String::from_utf8_lossy(&second.stdout).contains("\"applied\":\"[]\""),
        "nothing applied twice"
    );
    let db = connect(&db_url).await;
    let versions = db
        .query("SELECT version FROM schema_migrations", &[])
        .await
        .unwrap();
    assert_eq!(versions.len(), 3);
    db.query(
        "SELECT id, timestamp, user_id, response_time, urgency, error, api_key_id FROM messages",
        &[],
    )
    .await
    .unwrap();
    db.query("SELECT id, name, digest, revoked_at FROM api_keys", &[])
        .await
        .unwrap();
}
