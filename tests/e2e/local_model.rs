//! The stack with local-llm, the real small model, as its LLM (what README
//! command 1 starts when no Ollama answers): questions this model gets right
//! answered right through the gateway, stored, and the aggregator's Ollama
//! check passing against it unchanged.

use reqwest::StatusCode;
use serde_json::json;
use test_support::app::{connect, send_json};
use test_support::shared_redis;

use crate::{LOCAL_MODEL, Llm, Stack};

/// Questions and the words a right answer contains one of (chosen by
/// trying: this model answers them right when sampling greedily, with the
/// service's system prompt).
const QUESTIONS: [(&str, &[&str]); 3] = [
    ("What is the capital of France?", &["paris"]),
    ("What is 2 + 2?", &["4", "four"]),
    ("What color is the sky on a clear day?", &["blue"]),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_small_model_answers_through_the_gateway() {
    let stack = Stack::start_with(&shared_redis().url(), Llm::Local, &[]).await;
    let completions = format!("{}/v1/chat/completions", stack.gateway.base_url());
    for (question, expected) in QUESTIONS {
        let (status, answer) = send_json(stack.http.post(&completions).json(&json!({
            "model": LOCAL_MODEL,
            "temperature": 0,
            "max_tokens": 60,
            "messages": [{"role": "user", "content": question}],
        })))
        .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let reply = answer["choices"][0]["message"]["content"].as_str().unwrap();
        eprintln!("{question} -> {reply}");
        assert!(
            expected
                .iter()
                .any(|word| reply.to_lowercase().contains(word)),
            "{question} -> {reply}"
        );
    }

    // The native API: a real reply (not the simulator's echo), stored.
    let (status, answer) = stack
        .chat(json!({"user_id": "local-user", "message": "Hello! Who are you?"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let reply = answer["reply"].as_str().unwrap();
    assert!(
        !reply.trim().is_empty() && !reply.starts_with("Echo:"),
        "{reply}"
    );
    let db = connect(&stack.db_url).await;
    let stored = db
        .query_one("SELECT count(*) FROM messages WHERE reply <> ''", &[])
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(stored, 4);

    // The aggregator's Ollama check: /api/tags lists the configured model.
    let health = format!("{}/health", stack.aggregator.base_url());
    let verdict = crate::chat_path::wait_for_status(&stack.http, &health, "OK").await;
    assert_eq!(verdict["services"]["ollama"]["status"], "OK", "{verdict}");
}
