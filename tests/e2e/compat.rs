//! The OpenAI- and Ollama-compatible APIs, driven by the official `openai`
//! and `ollama` Python clients (tests/e2e/compat_clients.py) against the
//! running stack: what each client reads, the rows stored with their user
//! and API, and the API label on chat's message counter.

use reqwest::StatusCode;
use serde_json::{Value, json};
use test_support::app::connect;

use crate::{Stack, repo_root, venv_tool};

const MODEL: &str = "llama3.2:1b";

async fn run_clients(stack: &Stack, session: &str) -> Value {
    let script = repo_root().join("tests/e2e/compat_clients.py");
    let envs = [
        ("GATEWAY", stack.gateway.base_url()),
        ("API_KEY", stack.api_key.clone()),
        ("MODEL", MODEL.to_owned()),
        ("SESSION", session.to_owned()),
    ];
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(venv_tool("python"))
            .arg(script)
            .envs(envs)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "the client script failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_openai_and_ollama_clients_use_the_gateway() {
    let stack = Stack::start(&[]).await;
    let (status, first) = stack
        .chat(json!({"user_id": "native-user", "message": "Where is parcel 42?"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let session = first["session_id"].as_str().unwrap().to_owned();

    let seen = run_clients(&stack, &session).await;

    // OpenAI, whole: the client's own history reached the model.
    let whole = &seen["openai"];
    assert_eq!(whole["object"], "chat.completion");
    assert_eq!(whole["model"], MODEL);
    assert_eq!(whole["role"], "assistant");
    assert_eq!(whole["finish_reason"], "stop");
    let content = whole["content"].as_str().unwrap();
    assert!(
        content.starts_with(
            "Echo: Where is my order?. Context: 2 earlier messages (first: \"Hello there\")"
        ),
        "{content}"
    );
    let usage = &whole["usage"];
    assert!(usage["completion_tokens"].as_u64().unwrap() > 0);
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(
            usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
        )
    );
    let message_id = whole["id"]
        .as_str()
        .unwrap()
        .strip_prefix("chatcmpl-")
        .unwrap()
        .to_owned();

    // OpenAI, streamed with usage.
    let streamed = &seen["openai_stream"];
    assert_eq!(streamed["objects"], json!(["chat.completion.chunk"]));
    assert_eq!(streamed["ids"].as_array().unwrap().len(), 1);
    assert_eq!(streamed["first_role"], "assistant");
    assert!(
        streamed["text"]
            .as_str()
            .unwrap()
            .starts_with("Echo: Stream this please. Context: 0 earlier messages")
    );
    assert_eq!(streamed["finish_reasons"], json!(["stop"]));
    assert_eq!(streamed["last_has_choices"], false);
    assert!(
        streamed["last_usage"]["completion_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );

    assert_eq!(seen["openai_short"]["finish_reason"], "length");
    assert_eq!(seen["openai_short"]["completion_tokens"], 3);
    assert!(
        seen["openai_session"]
            .as_str()
            .unwrap()
            .contains("Context: 2 earlier messages (first: \"Where is parcel 42?\")"),
        "the session's stored history is used: {}",
        seen["openai_session"]
    );

    // OpenAI's errors, in its shape and with its statuses.
    let errors = &seen["openai_errors"];
    assert_eq!(errors["tools"]["status"], 400);
    assert_eq!(errors["tools"]["kind"], "BadRequestError");
    assert_eq!(errors["tools"]["body"]["param"], "tools");
    assert_eq!(errors["tools"]["body"]["type"], "invalid_request_error");
    assert_eq!(errors["n"]["body"]["param"], "n");
    assert_eq!(errors["model"]["status"], 404);
    assert_eq!(errors["model"]["body"]["code"], "model_not_found");
    assert_eq!(errors["empty"]["status"], 400);
    assert_eq!(errors["empty"]["body"]["param"], "messages[0].content");
    assert_eq!(errors["key"]["status"], 401);
    assert_eq!(errors["key"]["body"]["code"], "invalid_api_key");
    assert_eq!(
        seen["openai_models"],
        json!(["llama3.2:1b", "qwen2.5:0.5b"])
    );

    // Ollama.
    let chat = &seen["ollama_chat"];
    assert_eq!(chat["model"], MODEL);
    assert_eq!(chat["role"], "assistant");
    assert_eq!(chat["done"], true);
    assert_eq!(chat["done_reason"], "stop");
    assert!(chat["content"].as_str().unwrap().starts_with(
        "Echo: My second question. Context: 2 earlier messages (first: \"My first question\")"
    ));
    assert!(chat["eval_count"].as_u64().unwrap() > 0);
    assert!(chat["total_duration"].as_u64().unwrap() > 0);
    let streamed = &seen["ollama_chat_stream"];
    assert!(streamed["pieces"].as_u64().unwrap() > 2);
    let done: Vec<bool> = serde_json::from_value(streamed["done"].clone()).unwrap();
    assert_eq!(done.iter().filter(|d| **d).count(), 1);
    assert_eq!(done.last(), Some(&true));
    assert!(
        streamed["text"]
            .as_str()
            .unwrap()
            .starts_with("Echo: Stream it.")
    );
    assert!(
        seen["ollama_generate"]["response"]
            .as_str()
            .unwrap()
            .starts_with("Echo: Why is the sky blue?")
    );
    assert_eq!(seen["ollama_generate"]["done_reason"], "stop");
    assert_eq!(seen["ollama_generate_stream"]["done_reason"], "length");
    assert_eq!(
        seen["ollama_load"],
        json!({"done": true, "done_reason": "load"})
    );
    assert_eq!(seen["ollama_list"], json!(["llama3.2:1b", "qwen2.5:0.5b"]));
    let errors = &seen["ollama_errors"];
    assert_eq!(errors["model"]["status"], 404);
    assert_eq!(errors["option"]["status"], 400);
    assert!(
        errors["option"]["error"]
            .as_str()
            .unwrap()
            .contains("mirostat")
    );
    assert_eq!(errors["key"]["status"], 401);

    // Stored: each exchange once, with its user and API; no session for
    // the stateless ones, the named session for the one that used it.
    let db = connect(&stack.db_url).await;
    let rows = db
        .query(
            "SELECT api, user_id, session_id::text, message, streamed FROM messages \
             WHERE api <> 'native' ORDER BY timestamp",
            &[],
        )
        .await
        .unwrap();
    let rows: Vec<(String, String, Option<String>, String, bool)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    let expected = [
        ("openai", "openai-user", false, "Where is my order?", false),
        ("openai", "e2e", false, "Stream this please", true),
        ("openai", "e2e", false, "Tell me a long story", false),
        ("openai", "native-user", true, "And now?", false),
        ("ollama", "e2e", false, "My second question", false),
        ("ollama", "e2e", false, "Stream it", true),
        ("ollama", "e2e", false, "Why is the sky blue?", false),
        ("ollama", "e2e", false, "Count to three", true),
    ];
    let stored: Vec<(&str, &str, bool, &str, bool)> = rows
        .iter()
        .map(|(api, user, session, message, streamed)| {
            (
                api.as_str(),
                user.as_str(),
                session.is_some(),
                message.as_str(),
                *streamed,
            )
        })
        .collect();
    assert_eq!(stored, expected);
    assert_eq!(rows[3].2.as_deref(), Some(session.as_str()));
    let id: String = db
        .query_one(
            "SELECT id::text FROM messages WHERE message = 'Where is my order?'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(id.replace('-', ""), message_id);

    // Counted with the API as a label.
    let metrics = reqwest::get(format!("{}/metrics", stack.chat.metrics_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let counted = |api: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| {
                l.starts_with("chatbot_messages_total{") && l.contains(&format!("api=\"{api}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert_eq!(counted("openai"), 4.0, "{metrics}");
    assert_eq!(counted("ollama"), 4.0);
    assert_eq!(counted("native"), 1.0);
}
