//! Failing fast and losing nothing: the outbox replayed at start, several
//! LLM backends with a breaker, load shedding, slow clients, sessions Redis
//! lost.

use std::time::{Duration, Instant};

use chat::db::MessageRow;
use chatbot_common::api::{MessageType, Urgency};
use reqwest::StatusCode;
use serde_json::json;

use crate::Stack;

fn row(message: &str) -> MessageRow {
    MessageRow {
        id: uuid::Uuid::new_v4(),
        session_id: Some(uuid::Uuid::new_v4()),
        api: chatbot_common::api::Api::Native,
        user_id: "kept".into(),
        api_key_id: None,
        timestamp: chrono::Utc::now(),
        kind: MessageType::Other,
        urgency: Urgency::Low,
        message: message.into(),
        reply: Some("an answer".into()),
        model: "llama3.2:1b".into(),
        response_time_ms: 5,
        prompt_tokens: Some(3),
        completion_tokens: Some(2),
        streamed: false,
        error: None,
        error_code: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_an_earlier_process_left_in_the_outbox_is_stored_once_at_start() {
    let path = test_support::process::unique_outbox();
    let rows: Vec<MessageRow> = (0..5).map(|i| row(&format!("kept {i}"))).collect();
    {
        let outbox = chat::outbox::Outbox::open(path.as_ref(), 1 << 20).unwrap();
        for r in &rows {
            outbox.append_now(r).unwrap();
        }
        // Written once already before the crash: replayed, not duplicated.
        outbox.append_now(&rows[0]).unwrap();
    }
    let stack = Stack::start_with(|s| s.chat.outbox.path = path.clone().into()).await;
    for r in &rows {
        let stored = stack.row(&r.id.to_string()).await;
        assert_eq!(stored.get::<_, String>("message"), r.message);
    }
    assert_eq!(stack.rows().await.len(), 5, "each exchange once");
    test_support::poll::until(
        "the outbox to be emptied",
        Duration::from_secs(5),
        || async {
            let text = reqwest::get(format!("{}/metrics", stack.chat))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            text.lines()
                .any(|l| l.starts_with("chatbot_outbox_rows") && l.ends_with(" 0"))
                .then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_of_two_backends_down_every_chat_is_answered() {
    let other = ollama_sim::spawn(ollama_sim::SimConfig::default())
        .await
        .unwrap();
    let other_url = other.url();
    other.stop().await;
    let stack = Stack::start_with(|s| s.ollama.urls = vec![s.ollama.url.clone(), other_url]).await;
    for i in 0..20 {
        stack.say("u", &format!("message {i}"), None).await;
    }
    assert_eq!(stack.sim.sim().stats().generations_started, 20);
    let ready = reqwest::get(format!("{}/readyz", stack.chat))
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK, "one backend serves");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_backend_hanging_the_breaker_answers_at_once() {
    let stack = Stack::start_with(|s| s.chat.timeouts.first_token_ms = 300).await;
    stack.sim.sim().update_config(|c| c.hang = true).unwrap();
    for _ in 0..3 {
        let (status, body) = stack.send(json!({"user_id": "u", "message": "hi"})).await;
        assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    }
    // Open: no wait for the first-token timeout.
    let started = Instant::now();
    let response = stack
        .http
        .post(format!("{}/chat", stack.chat))
        .json(&json!({"user_id": "u", "message": "hi"}))
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=5).contains(&retry), "{retry}");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "llm_unavailable");
    assert!(took < Duration::from_millis(250), "answered in {took:?}");
    // Refused at once, yet stored like every exchange.
    let stored = stack.rows().await;
    assert_eq!(stored.len(), 4, "every refused exchange is stored");
    // The backend recovers: after the cool-down, one probe closes the breaker.
    stack.sim.sim().update_config(|c| c.hang = false).unwrap();
    stack.until_answered().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_inflight_new_exchanges_are_shed_at_once() {
    let stack = Stack::start_with(|s| s.chat.max_inflight = 1).await;
    stack
        .sim
        .sim()
        .update_config(|c| c.first_token_ms = 1_000)
        .unwrap();
    let (status, shed) =
        test_support::app::one_too_many(&stack.http, &format!("{}/chat", stack.chat)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(shed.headers()["retry-after"], "1");
    let body: serde_json::Value = shed.json().await.unwrap();
    assert_eq!(body["error"]["code"], "overloaded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sending_its_body_slowly_is_cut_off_with_408() {
    let stack = Stack::start().await;
    let head = "POST /chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"user_id\":";
    let started = Instant::now();
    let answer =
        test_support::app::raw_until_closed(&stack.chat, head.as_bytes(), Duration::from_secs(20))
            .await
            .expect("the connection was never closed");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_redis_lost_comes_back_from_the_database() {
    let stack = Stack::start().await;
    let first = stack.say("u", "my name is Ada", None).await;
    let session = first["session_id"].as_str().unwrap().to_owned();
    stack.row(first["message_id"].as_str().unwrap()).await;
    // Redis loses every key of this stack (a restart without persistence).
    let client = redis::Client::open(test_support::shared_redis().url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let prefix = stack.prefix.clone();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!keys.is_empty());
    let _: () = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut conn)
        .await
        .unwrap();

    let next = stack.say("u", "what is my name?", Some(&session)).await;
    assert_eq!(next["session_id"], session.as_str());
    let reply = next["reply"].as_str().unwrap();
    assert!(reply.contains("Context: 2 earlier messages"), "{reply}");
    // Another user cannot revive it.
    let (status, body) = stack
        .send(json!({"user_id": "mallory", "message": "hi", "session_id": session}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}
