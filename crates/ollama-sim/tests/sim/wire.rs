//! Ollama's wire format: routes, stream and final objects, errors.

use ollama_sim::{SimConfig, SimMessage, chat_reply, generate_reply};
use serde_json::{Value, json};

use crate::helpers::{
    assert_timestamp, chat_body, chat_content, content_type, json_body, ndjson, start,
    start_default, uint,
};

const MODEL: &str = "llama3.2:1b";

fn final_stats_ok(last: &Value) {
    for key in [
        "total_duration",
        "load_duration",
        "prompt_eval_count",
        "prompt_eval_duration",
        "eval_count",
        "eval_duration",
    ] {
        assert!(uint(last, key) > 0, "{key} should be positive in {last}");
    }
    assert!(
        uint(last, "total_duration")
            >= uint(last, "load_duration")
                + uint(last, "prompt_eval_duration")
                + uint(last, "eval_duration"),
        "total_duration covers the parts: {last}"
    );
}

#[tokio::test]
async fn root_answers_get_and_head_as_ollama() {
    let h = start_default().await;
    let response = h
        .client
        .get(h.url("/"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status().as_u16(), 200);
    assert!(content_type(&response).starts_with("text/plain"));
    assert_eq!(
        response.text().await.unwrap_or_default(),
        "Ollama is running"
    );

    let head = h
        .client
        .head(h.url("/"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(head.status().as_u16(), 200);
    assert_eq!(head.text().await.unwrap_or_default(), "");
}

#[tokio::test]
async fn version_tags_and_ps_have_ollamas_shape() {
    let h = start_default().await;
    let (status, version) = h.get_json("/api/version").await;
    assert_eq!(status, 200);
    assert_eq!(version, json!({"version": ollama_sim::OLLAMA_VERSION}));

    let (status, tags) = h.get_json("/api/tags").await;
    assert_eq!(status, 200);
    let models = tags["models"].as_array().cloned().unwrap_or_default();
    let names: Vec<&str> = models.iter().filter_map(|m| m["name"].as_str()).collect();
    assert_eq!(names, ["llama3.2:1b", "qwen2.5:0.5b"]);
    for m in &models {
        assert_eq!(m["model"], m["name"]);
        assert_timestamp(&m["modified_at"]);
        assert!(uint(m, "size") > 0);
        assert_eq!(m["digest"].as_str().map(str::len), Some(64));
        let details = &m["details"];
        for key in [
            "parent_model",
            "format",
            "family",
            "parameter_size",
            "quantization_level",
        ] {
            assert!(details[key].is_string(), "details.{key} in {m}");
        }
        assert!(details["families"].is_array());
    }

    let (status, ps) = h.get_json("/api/ps").await;
    assert_eq!(status, 200);
    assert_eq!(ps, json!({"models": []}), "nothing is loaded before use");

    let (_, _, first) = h.chat_whole(&chat_body(MODEL, &[("user", "hi")])).await;
    let (_, _, second) = h.chat_whole(&chat_body(MODEL, &[("user", "hi")])).await;
    assert_eq!(
        uint(&first, "load_duration"),
        ollama_sim::state::COLD_LOAD_NS
    );
    assert_eq!(
        uint(&second, "load_duration"),
        ollama_sim::state::WARM_LOAD_NS
    );

    let (_, ps) = h.get_json("/api/ps").await;
    let loaded = ps["models"].as_array().cloned().unwrap_or_default();
    assert_eq!(loaded.len(), 1, "{ps}");
    let m = &loaded[0];
    assert_eq!(m["name"], MODEL);
    assert_eq!(m["model"], MODEL);
    assert_timestamp(&m["expires_at"]);
    assert!(m["size_vram"].is_u64());
    assert!(uint(m, "size") > 0);
    assert!(m["details"]["family"].is_string());
    assert_eq!(m["digest"].as_str().map(str::len), Some(64));
}

#[tokio::test]
async fn chat_streams_ndjson_ending_with_stats() {
    let h = start_default().await;
    let body = chat_body(MODEL, &[("system", "be brief"), ("user", "hello there")]);
    let (status, ctype, lines) = h.chat_stream(&body).await;
    assert_eq!(status, 200);
    assert_eq!(ctype, "application/x-ndjson");
    assert!(
        lines.len() >= 13,
        "12 tokens and the final object: {lines:?}"
    );

    let (last, chunks) = lines.split_last().unwrap_or_else(|| panic!("no lines"));
    for chunk in chunks {
        assert_eq!(chunk["model"], MODEL);
        assert_timestamp(&chunk["created_at"]);
        assert_eq!(chunk["message"]["role"], "assistant");
        assert!(chunk["message"]["content"].is_string());
        assert_eq!(chunk["done"], false);
        assert!(chunk.get("done_reason").is_none());
        assert!(chunk.get("eval_count").is_none());
    }
    assert_eq!(last["model"], MODEL);
    assert_timestamp(&last["created_at"]);
    assert_eq!(last["done"], true);
    assert_eq!(last["done_reason"], "stop");
    assert_eq!(last["message"], json!({"role": "assistant", "content": ""}));
    final_stats_ok(last);
    assert_eq!(uint(last, "eval_count"), chunks.len() as u64);
    // 2 + 2 words, 4 per message.
    assert_eq!(uint(last, "prompt_eval_count"), 4 + 8);

    let content = chat_content(chunks);
    assert!(
        content.starts_with("Echo: hello there. Context: 0 earlier messages"),
        "{content}"
    );
    assert_eq!(content.split(' ').count(), 12);
}

#[tokio::test]
async fn stream_is_the_default_and_non_stream_equals_the_concatenated_stream() {
    let h = start_default().await;
    let body = chat_body(MODEL, &[("user", "what is   the\nanswer?")]);
    let (_, _, lines) = h.chat_stream(&body).await;
    let streamed = chat_content(&lines);

    let (status, ctype, whole) = h.chat_whole(&body).await;
    assert_eq!(status, 200);
    assert!(ctype.starts_with("application/json"), "{ctype}");
    assert_eq!(whole["done"], true);
    assert_eq!(whole["done_reason"], "stop");
    assert_eq!(whole["message"]["role"], "assistant");
    assert_eq!(
        whole["message"]["content"].as_str(),
        Some(streamed.as_str())
    );
    assert_timestamp(&whole["created_at"]);
    final_stats_ok(&whole);
    assert_eq!(uint(&whole, "eval_count"), 12);

    let explicit_true = {
        let mut b = body.clone();
        b["stream"] = json!(true);
        h.chat_stream(&b).await.2
    };
    assert_eq!(chat_content(&explicit_true), streamed);
}

#[tokio::test]
async fn replies_are_deterministic_and_quote_the_history() {
    let h = start(SimConfig {
        reply_tokens: 30,
        ..SimConfig::default()
    })
    .await;
    let history = [
        ("system", "You are a helpful assistant."),
        ("user", "My name is Ada and I like tea"),
        ("assistant", "Nice to meet you, Ada."),
        ("user", "What did I say I like?"),
    ];
    let body = chat_body(MODEL, &history);
    let (_, _, one) = h.chat_whole(&body).await;
    let (_, _, two) = h.chat_whole(&body).await;
    let content = one["message"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(two["message"]["content"], one["message"]["content"]);
    assert!(
        content.starts_with(
            "Echo: What did I say I like?. Context: 2 earlier messages \
             (first: \"My name is Ada and I like tea\")"
        ),
        "{content}"
    );
    let messages: Vec<SimMessage> = history
        .iter()
        .map(|(r, c)| SimMessage::new(*r, *c))
        .collect();
    assert_eq!(content, chat_reply(MODEL, &messages, 30));
    assert_eq!(content.split(' ').count(), 30);

    // Another model, another filler; the same prefix.
    let (_, _, other) = h.chat_whole(&chat_body("qwen2.5:0.5b", &history)).await;
    let other = other["message"]["content"].as_str().unwrap_or_default();
    assert_ne!(other, content);
    assert!(other.starts_with("Echo: What did I say I like?. Context: 2 earlier messages"));
}

#[tokio::test]
async fn long_first_message_is_truncated_to_sixty_characters() {
    let h = start_default().await;
    let long = "abcdefghij ".repeat(10);
    let body = chat_body(
        MODEL,
        &[("user", &long), ("assistant", "ok"), ("user", "and now?")],
    );
    let (_, _, whole) = h.chat_whole(&body).await;
    let content = whole["message"]["content"].as_str().unwrap_or_default();
    let quote: String = long.chars().take(60).collect();
    assert!(
        content.contains(&format!("(first: \"{}\")", quote.trim_end())),
        "{content}"
    );
}

#[tokio::test]
async fn reply_length_and_num_predict() {
    let h = start(SimConfig {
        reply_tokens: 40,
        ..SimConfig::default()
    })
    .await;
    let (_, _, whole) = h.chat_whole(&chat_body(MODEL, &[("user", "hi")])).await;
    assert_eq!(uint(&whole, "eval_count"), 40);
    assert_eq!(
        whole["message"]["content"]
            .as_str()
            .map(|c| c.split(' ').count()),
        Some(40)
    );

    let mut body = chat_body(MODEL, &[("user", "hi")]);
    body["options"] = json!({"num_predict": 5, "temperature": 0});
    let (_, _, lines) = h.chat_stream(&body).await;
    assert_eq!(lines.len(), 6);
    let last = &lines[5];
    assert_eq!(last["done_reason"], "length");
    assert_eq!(uint(last, "eval_count"), 5);
    assert_eq!(chat_content(&lines), "Echo: hi. Context: 0 earlier");
}

#[tokio::test]
async fn generate_streams_and_answers_whole() {
    let h = start_default().await;
    let body = json!({"model": MODEL, "prompt": "Why is the sky blue?", "system": "be short"});
    let response = h.post("/api/generate", &body).await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(content_type(&response), "application/x-ndjson");
    let lines = ndjson(response).await;
    let (last, chunks) = lines.split_last().unwrap_or_else(|| panic!("no lines"));
    for chunk in chunks {
        assert_eq!(chunk["model"], MODEL);
        assert_timestamp(&chunk["created_at"]);
        assert!(chunk["response"].is_string());
        assert_eq!(chunk["done"], false);
        assert!(chunk.get("message").is_none());
    }
    assert_eq!(last["done"], true);
    assert_eq!(last["done_reason"], "stop");
    assert_eq!(last["response"], "");
    assert!(last["context"].as_array().is_some_and(|c| !c.is_empty()));
    final_stats_ok(last);
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["response"].as_str())
        .collect();
    assert_eq!(
        streamed,
        generate_reply(MODEL, Some("be short"), "Why is the sky blue?", 12)
    );
    assert!(streamed.starts_with("Echo: Why is the sky blue?. Context: 0 earlier messages"));

    let mut whole_body = body.clone();
    whole_body["stream"] = json!(false);
    let response = h.post("/api/generate", &whole_body).await;
    assert!(content_type(&response).starts_with("application/json"));
    let whole = json_body(response).await;
    assert_eq!(whole["response"].as_str(), Some(streamed.as_str()));
    assert_eq!(whole["done"], true);
    assert!(whole["context"].is_array());
    final_stats_ok(&whole);
}

#[tokio::test]
async fn empty_messages_or_prompt_load_and_keep_alive_zero_unloads() {
    let h = start_default().await;
    let (status, _, load) = h.chat_whole(&json!({"model": MODEL, "messages": []})).await;
    assert_eq!(status, 200);
    assert_eq!(load["done"], true);
    assert_eq!(load["done_reason"], "load");
    let (_, ps) = h.get_json("/api/ps").await;
    assert_eq!(ps["models"].as_array().map(Vec::len), Some(1));

    let response = h
        .post("/api/generate", &json!({"model": MODEL, "keep_alive": 0}))
        .await;
    let unload = json_body(response).await;
    assert_eq!(unload["done_reason"], "unload");
    assert_eq!(unload["response"], "");
    let (_, ps) = h.get_json("/api/ps").await;
    assert_eq!(ps, json!({"models": []}));
}

#[tokio::test]
async fn model_names_default_to_latest_and_ignore_case() {
    let h = start(SimConfig {
        models: vec!["mistral".into(), "llama3.2:1b".into()],
        ..SimConfig::default()
    })
    .await;
    let (status, _, ok) = h
        .chat_whole(&chat_body("mistral:latest", &[("user", "x")]))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        ok["model"], "mistral:latest",
        "the model is echoed as requested"
    );
    let (status, _, _) = h
        .chat_whole(&chat_body("LLAMA3.2:1B", &[("user", "x")]))
        .await;
    assert_eq!(status, 200);
    let (status, _, body) = h.chat_whole(&chat_body("llama3.2", &[("user", "x")])).await;
    assert_eq!(status, 404);
    assert_eq!(body, json!({"error": "model 'llama3.2' not found"}));
}

#[tokio::test]
async fn errors_use_ollamas_statuses_and_messages() {
    let h = start_default().await;

    let response = h
        .post("/api/chat", &chat_body("nope:7b", &[("user", "x")]))
        .await;
    assert_eq!(response.status().as_u16(), 404);
    assert!(content_type(&response).starts_with("application/json"));
    assert_eq!(
        json_body(response).await,
        json!({"error": "model 'nope:7b' not found"})
    );

    let response = h
        .post("/api/generate", &json!({"model": "nope:7b", "prompt": "x"}))
        .await;
    assert_eq!(response.status().as_u16(), 404);
    assert_eq!(
        json_body(response).await,
        json!({"error": "model 'nope:7b' not found"})
    );

    for path in ["/api/chat", "/api/generate"] {
        let response = h.post(path, &json!({"messages": [], "prompt": "x"})).await;
        assert_eq!(response.status().as_u16(), 400, "{path}");
        assert_eq!(
            json_body(response).await,
            json!({"error": "model is required"})
        );

        let response = h.post_raw(path, "{\"model\": ").await;
        assert_eq!(response.status().as_u16(), 400, "{path}");
        let body = json_body(response).await;
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{body}"
        );
        assert_eq!(body.as_object().map(|o| o.len()), Some(1), "{body}");

        let response = h.post_raw(path, "").await;
        assert_eq!(response.status().as_u16(), 400);
        assert_eq!(
            json_body(response).await,
            json!({"error": "missing request body"})
        );
    }

    let response = h
        .post_raw("/api/chat", r#"{"model":"llama3.2:1b","messages":"hi"}"#)
        .await;
    assert_eq!(response.status().as_u16(), 400, "wrong field type");
    assert!(json_body(response).await["error"].is_string());

    let response = h
        .post("/api/chat", &chat_body(MODEL, &[("robot", "x")]))
        .await;
    assert_eq!(response.status().as_u16(), 400);
    let body = json_body(response).await;
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("robot")),
        "{body}"
    );

    let response = h
        .post("/api/chat", &chat_body(MODEL, &[("tool", "42")]))
        .await;
    assert_eq!(response.status().as_u16(), 200, "tool is a valid role");
}

#[tokio::test]
async fn show_describes_configured_models() {
    let h = start_default().await;
    let response = h.post("/api/show", &json!({"model": MODEL})).await;
    assert_eq!(response.status().as_u16(), 200);
    let body = json_body(response).await;
    assert_eq!(body["details"]["family"], "llama");
    let response = h.post("/api/show", &json!({"model": "nope"})).await;
    assert_eq!(response.status().as_u16(), 404);
    assert_eq!(
        json_body(response).await,
        json!({"error": "model 'nope' not found"})
    );
}

#[tokio::test]
async fn json_format_replies_with_a_json_object() {
    let h = start_default().await;
    let mut body = chat_body(MODEL, &[("user", "give me json")]);
    body["format"] = json!("json");
    let (_, _, whole) = h.chat_whole(&body).await;
    let content = whole["message"]["content"].as_str().unwrap_or_default();
    let parsed: Value =
        serde_json::from_str(content).unwrap_or_else(|e| panic!("not JSON ({e}): {content}"));
    assert!(
        parsed["reply"]
            .as_str()
            .is_some_and(|r| r.starts_with("Echo: give me json."))
    );
    let (_, _, lines) = h.chat_stream(&body).await;
    assert_eq!(chat_content(&lines), content);
}
