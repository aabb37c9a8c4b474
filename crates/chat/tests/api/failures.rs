//! Failures: bad input, the LLM failing in each way, dependencies going away.
//! Every failed exchange is still stored, with its error.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use test_support::TestPostgres;
use test_support::app::parse_sse;

use crate::Stack;

async fn only_row(stack: &Stack) -> tokio_postgres::Row {
    test_support::poll::until(
        "the failed exchange to be stored",
        Duration::from_secs(5),
        || async {
            let rows = stack.rows().await;
            assert!(rows.len() < 2, "one exchange, one row");
            rows.first().cloned()
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_input_is_rejected_before_the_llm() {
    let stack = Stack::start().await;
    let cases = [
        (json!({"user_id": "u", "message": ""}), "empty"),
        (
            json!({"user_id": "u", "message": "x".repeat(4001)}),
            "maximum is 4000",
        ),
        (json!({"user_id": "", "message": "hi"}), "user_id"),
        (
            json!({"user_id": "u", "message": "hi", "session_id": "nope"}),
            "UUID",
        ),
        (json!({"user_id": "u", "message": 5}), "invalid type"),
        (
            json!({"user_id": "u", "message": "hi", "extra": 1}),
            "unknown field",
        ),
    ];
    for (body, fragment) in cases {
        let (status, answer) = stack.send(body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_request");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(fragment), "{body}: {message}");
    }
    assert_eq!(stack.sim.sim().stats().generations_started, 0);
    assert!(
        stack.rows().await.is_empty(),
        "rejected requests are not exchanges"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_llm_is_a_503_and_stored() {
    let closed = test_support::free_port();
    let stack = Stack::start_with(|s| s.ollama.url = format!("http://127.0.0.1:{closed}")).await;
    let (status, body) = stack
        .send(json!({"user_id": "u", "message": "hello"}))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "llm_unavailable");
    let row = only_row(&stack).await;
    assert_eq!(
        row.get::<_, Option<String>>("error_code").as_deref(),
        Some("llm_unavailable")
    );
    assert!(row.get::<_, Option<String>>("error").is_some());
    assert_eq!(row.get::<_, Option<String>>("reply"), None);
    let ready = stack
        .http
        .get(format!("{}/readyz", stack.chat))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_llm_times_out_with_504() {
    let stack = Stack::start_with(|s| s.chat.timeouts.first_token_ms = 300).await;
    stack.sim.sim().update_config(|c| c.hang = true).unwrap();
    let (status, body) = stack
        .send(json!({"user_id": "u", "message": "hello"}))
        .await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert_eq!(body["error"]["code"], "llm_timeout");
    let row = only_row(&stack).await;
    assert_eq!(
        row.get::<_, Option<String>>("error_code").as_deref(),
        Some("llm_timeout")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_llm_error_is_a_502_naming_the_cause() {
    let stack = Stack::start_with(|s| s.chat.model = "no-such-model".into()).await;
    let (status, body) = stack
        .send(json!({"user_id": "u", "message": "hello"}))
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["error"]["code"], "llm_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("model 'no-such-model' not found")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_mid_stream_ends_with_an_error_event() {
    let stack = Stack::start().await;
    stack
        .sim
        .sim()
        .update_config(|c| c.mid_stream_error_after = Some(3))
        .unwrap();
    let (status, _, body) = stack
        .stream(json!({"user_id": "u", "message": "hello", "stream": true}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let events = parse_sse(&body);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["token", "token", "token", "error"], "{body}");
    let error: Value = serde_json::from_str(&events[3].1).unwrap();
    assert_eq!(error["error"]["code"], "llm_error");
    let row = only_row(&stack).await;
    assert_eq!(
        row.get::<_, Option<String>>("error_code").as_deref(),
        Some("llm_error")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_failing_before_any_token_is_a_plain_json_error() {
    let stack = Stack::start().await;
    stack
        .sim
        .sim()
        .update_config(|c| c.error_rate = 1.0)
        .unwrap();
    let (status, content_type, body) = stack
        .stream(json!({"user_id": "u", "message": "hello", "stream": true}))
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(content_type.starts_with("application/json"));
    assert!(body.contains("simulated failure"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_chat_still_answers_and_stores() {
    let closed = test_support::free_port();
    let stack =
        Stack::start_with(|s| s.redis.url = format!("redis://127.0.0.1:{closed}").as_str().into())
            .await;
    let reply = stack.say("u", "hello", None).await;
    assert!(
        reply["reply"]
            .as_str()
            .unwrap()
            .contains("Context: 0 earlier messages")
    );
    stack.row(reply["message_id"].as_str().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_loses_no_exchange() {
    let pg = TestPostgres::start();
    let url = pg.fresh_database().await;
    let stack = Stack::start_with(|s| s.database.url = url.as_str().into()).await;
    stack.say("u", "before the outage", None).await;
    pg.stop();
    let during = stack.say("u", "during the outage", None).await;
    assert!(
        during["reply"]
            .as_str()
            .unwrap()
            .starts_with("Echo: during the outage.")
    );
    pg.start_again();
    let row = stack.row(during["message_id"].as_str().unwrap()).await;
    assert_eq!(row.get::<_, String>("message"), "during the outage");
    assert_eq!(stack.rows().await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_idempotent() {
    let stack = Stack::start().await;
    let settings = chatbot_common::config::DatabaseSettings {
        url: stack.db_url.as_str().into(),
        ..chatbot_common::config::Settings::default().database
    };
    let pool = chat::db::pool(&settings).unwrap();
    assert_eq!(
        chat::db::migrate(&pool).await.unwrap(),
        Vec::<i32>::new(),
        "already applied at start-up"
    );
    let db = stack.db().await;
    let versions: Vec<i32> = db
        .query("SELECT version FROM schema_migrations", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, [1, 2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_reflects_llm_failures_seen_in_live_traffic() {
    let stack = Stack::start().await;
    let ready = || async {
        let response = stack
            .http
            .get(format!("{}/readyz", stack.chat))
            .send()
            .await
            .unwrap();
        (response.status(), response.json::<Value>().await.unwrap())
    };
    assert_eq!(ready().await.0, StatusCode::OK);
    // Ollama still answers /api/tags, but every generation fails: three in
    // a row open the breaker.
    stack
        .sim
        .sim()
        .update_config(|c| c.error_rate = 1.0)
        .unwrap();
    for _ in 0..3 {
        let (status, _) = stack
            .send(json!({"user_id": "u", "message": "hello"}))
            .await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
    }
    let (status, report) = ready().await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{report}");
    let reason = report["checks"]["ollama"]["error"].as_str().unwrap();
    assert!(reason.contains("no LLM backend can take calls"), "{reason}");
    stack
        .sim
        .sim()
        .update_config(|c| c.error_rate = 0.0)
        .unwrap();
    stack.until_answered().await;
    assert_eq!(ready().await.0, StatusCode::OK, "one success closes it");
}
