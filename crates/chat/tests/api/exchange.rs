//! Successful exchanges: replies, storage, history, streaming, escalation.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use test_support::N8nStandIn;
use test_support::app::parse_sse;

use crate::Stack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_is_returned_and_the_exchange_stored() {
    let stack = Stack::start().await;
    let reply = stack
        .say("alice", "Hello, how do I reset my password?", None)
        .await;
    assert!(
        reply["reply"]
            .as_str()
            .unwrap()
            .starts_with("Echo: Hello, how do I reset my password?."),
        "{reply}"
    );
    assert_eq!(
        reply["type"], "greeting",
        "the first matching rule wins: greeting before question"
    );
    assert_eq!(reply["urgency"], "NORMAL");
    assert_eq!(reply["model"], "llama3.2:1b");
    assert!(reply["usage"]["completion_tokens"].as_u64().unwrap() >= 12);
    assert!(reply["usage"]["prompt_tokens"].as_u64().unwrap() > 0);

    let row = stack.row(reply["message_id"].as_str().unwrap()).await;
    assert_eq!(row.get::<_, String>("user_id"), "alice");
    assert_eq!(
        row.get::<_, String>("message"),
        "Hello, how do I reset my password?"
    );
    assert_eq!(
        row.get::<_, Option<String>>("reply").as_deref(),
        reply["reply"].as_str()
    );
    assert_eq!(row.get::<_, String>("type"), "greeting");
    assert_eq!(row.get::<_, String>("urgency"), "NORMAL");
    assert_eq!(row.get::<_, Option<String>>("error"), None);
    assert_eq!(
        i64::from(row.get::<_, i32>("response_time")),
        reply["response_time_ms"].as_i64().unwrap()
    );
    assert_eq!(
        row.get::<_, uuid::Uuid>("session_id").to_string(),
        reply["session_id"].as_str().unwrap()
    );
    assert_eq!(
        i64::from(row.get::<_, Option<i32>>("completion_tokens").unwrap()),
        reply["usage"]["completion_tokens"].as_i64().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_second_message_carries_the_first_as_context() {
    let stack = Stack::start().await;
    let first = stack.say("bob", "My name is Bob", None).await;
    let session = first["session_id"].as_str().unwrap();
    let second = stack.say("bob", "What is my name?", Some(session)).await;
    assert_eq!(second["session_id"], first["session_id"]);
    let text = second["reply"].as_str().unwrap();
    assert!(
        text.contains("Context: 2 earlier messages (first: \"My name is Bob\")"),
        "the model saw the first exchange: {text}"
    );
    let (_, stored) = test_support::app::send_json(
        stack
            .http
            .get(format!("{}/sessions/{session}", stack.session)),
    )
    .await;
    let roles: Vec<&str> = stored["turns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "user", "assistant"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_last_history_turns_go_to_the_model() {
    for (history_turns, expected) in [
        (3, "Context: 3 earlier messages (first: \"two\")"),
        (0, "Context: 0 earlier messages"),
    ] {
        let stack = Stack::start_with(|s| s.chat.history_turns = history_turns).await;
        let first = stack.say("dan", "one", None).await;
        let session = first["session_id"].as_str();
        stack.say("dan", "two", session).await;
        let third = stack.say("dan", "three", session).await;
        let text = third["reply"].as_str().unwrap();
        assert!(
            text.contains(expected),
            "history_turns = {history_turns}: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_of_another_user_is_not_found() {
    let stack = Stack::start().await;
    let first = stack.say("carol", "hello", None).await;
    let (status, body) = stack
        .send(json!({"user_id": "mallory", "message": "hi", "session_id": first["session_id"]}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "session_not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_reply_sends_tokens_then_the_final_answer() {
    let stack = Stack::start().await;
    let (status, content_type, body) = stack
        .stream(json!({"user_id": "dave", "message": "Tell me a story", "stream": true}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    let events = parse_sse(&body);
    let (last_name, last_data) = events.last().unwrap();
    assert_eq!(last_name, "done", "{body}");
    let done: Value = serde_json::from_str(last_data).unwrap();
    let tokens: String = events
        .iter()
        .filter(|(n, _)| n == "token")
        .map(|(_, d)| {
            serde_json::from_str::<Value>(d).unwrap()["content"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(events.len() > 3, "several token events: {body}");
    assert_eq!(
        done["reply"].as_str().unwrap(),
        tokens,
        "the final answer is the tokens joined"
    );
    let row = stack.row(done["message_id"].as_str().unwrap()).await;
    assert!(row.get::<_, bool>("streamed"));
    assert_eq!(row.get::<_, Option<String>>("reply").unwrap(), tokens);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urgent_messages_reach_n8n_and_others_do_not() {
    let n8n = N8nStandIn::start().await;
    let stack = Stack::start_with(|s| {
        s.n8n.enabled = true;
        s.n8n.webhook_url = n8n.webhook_url().as_str().into();
    })
    .await;
    stack.say("erin", "thanks for the help", None).await;
    let urgent = stack.say("erin", "The site is down, URGENT", None).await;
    assert_eq!(urgent["urgency"], "HIGH");
    let received = n8n.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(received.len(), 1, "only the urgent message: {received:?}");
    assert_eq!(received[0]["message_id"], urgent["message_id"]);
    assert_eq!(received[0]["urgency"], "HIGH");
    assert_eq!(received[0]["message"], "The site is down, URGENT");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(n8n.received().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_n8n_does_not_delay_the_reply() {
    let stack = Stack::start_with(|s| {
        s.n8n.enabled = true;
        // A listener that accepts and never answers: the post hangs until its timeout.
        let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        s.n8n.webhook_url = format!("http://{}/webhook/x", hole.local_addr().unwrap())
            .as_str()
            .into();
        s.n8n.timeout_ms = 10_000;
        std::mem::forget(hole);
    })
    .await;
    let started = std::time::Instant::now();
    let reply = stack.say("frank", "emergency: nothing works", None).await;
    assert_eq!(reply["urgency"], "HIGH");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the reply waited for n8n: {:?}",
        started.elapsed()
    );
}
