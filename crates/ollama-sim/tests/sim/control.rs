//! The `/_sim/*` control routes and the common service routes.

use serde_json::json;

use crate::helpers::{chat_body, start_default};

const MODEL: &str = "llama3.2:1b";

#[tokio::test]
async fn config_can_be_read_and_merged() {
    let h = start_default().await;
    let (status, config) = h.get_json("/_sim/config").await;
    assert_eq!(status, 200);
    assert_eq!(
        config,
        json!({
            "models": ["llama3.2:1b", "qwen2.5:0.5b"],
            "first_token_ms": 0,
            "tokens_per_sec": 0.0,
            "reply_tokens": 12,
            "error_rate": 0.0,
            "mid_stream_error_after": null,
            "hang": false,
            "slow_start_ms": 0
        })
    );

    let (status, merged) = h
        .configure(
            json!({"reply_tokens": 20, "mid_stream_error_after": 5, "models": ["phi3:mini"]}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(merged["reply_tokens"], 20);
    assert_eq!(merged["mid_stream_error_after"], 5);
    assert_eq!(merged["hang"], false, "absent fields keep their value");
    let (_, read_back) = h.get_json("/_sim/config").await;
    assert_eq!(read_back, merged);
    assert_eq!(h.server.sim().config().reply_tokens, 20);

    let (_, tags) = h.get_json("/api/tags").await;
    assert_eq!(tags["models"][0]["name"], "phi3:mini");
    let (status, _, _) = h.chat_whole(&chat_body(MODEL, &[("user", "x")])).await;
    assert_eq!(status, 404, "the model list changed");

    let (status, cleared) = h.configure(json!({"mid_stream_error_after": null})).await;
    assert_eq!(status, 200);
    assert!(cleared["mid_stream_error_after"].is_null());

    for bad in [
        json!({"error_rate": 2.0}),
        json!({"unknown": true}),
        json!({"reply_tokens": "many"}),
        json!({"models": []}),
    ] {
        let (status, body) = h.configure(bad.clone()).await;
        assert_eq!(status, 400, "{bad}");
        assert!(body["error"].is_string(), "{body}");
    }
    let (_, unchanged) = h.get_json("/_sim/config").await;
    assert_eq!(unchanged, cleared, "a refused change changes nothing");
}

#[tokio::test]
async fn stats_count_requests_and_generations() {
    let h = start_default().await;
    let _ = h.chat_stream(&chat_body(MODEL, &[("user", "a")])).await;
    let _ = h
        .chat_whole(&chat_body("qwen2.5:0.5b", &[("user", "b")]))
        .await;
    let _ = h.chat_whole(&chat_body("nope", &[("user", "c")])).await;
    let _ = h
        .post("/api/generate", &json!({"model": MODEL, "prompt": "d"}))
        .await
        .text()
        .await;
    let _ = h.get_json("/api/tags").await;
    let _ = h.get_json("/api/version").await;

    let (status, stats) = h.get_json("/_sim/stats").await;
    assert_eq!(status, 200);
    assert_eq!(stats["requests"]["chat"], 3);
    assert_eq!(stats["requests"]["generate"], 1);
    assert_eq!(stats["requests"]["tags"], 1);
    assert_eq!(stats["requests"]["version"], 1);
    assert_eq!(stats["generations_started"], 3);
    assert_eq!(stats["generations_completed"], 3);
    assert_eq!(
        stats["generations_by_model"],
        json!({"llama3.2:1b": 2, "qwen2.5:0.5b": 1})
    );
    assert_eq!(stats["tokens_emitted"], 36);

    let typed = h.server.sim().stats();
    assert_eq!(typed.requests.chat, 3);

    let response = h
        .client
        .delete(h.url("/_sim/stats"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status().as_u16(), 200);
    let (_, stats) = h.get_json("/_sim/stats").await;
    assert_eq!(stats["requests"]["chat"], 0);
    assert_eq!(stats["generations_started"], 0);
}

#[tokio::test]
async fn recent_requests_keep_the_bodies_received() {
    let h = start_default().await;
    let body = chat_body(MODEL, &[("system", "sys"), ("user", "hello")]);
    let _ = h.chat_whole(&body).await;
    let (status, recent) = h.get_json("/_sim/requests").await;
    assert_eq!(status, 200);
    let requests = recent["requests"].as_array().cloned().unwrap_or_default();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["endpoint"], "chat");
    assert_eq!(requests[0]["body"]["messages"], body["messages"]);
    assert_eq!(requests[0]["body"]["stream"], false);
}

#[tokio::test]
async fn common_service_routes_are_present() {
    let h = start_default().await;
    let (status, live) = h.get_json("/livez").await;
    assert_eq!(status, 200);
    assert_eq!(live["status"], "alive");
    let (status, _) = h.get_json("/readyz").await;
    assert_eq!(status, 200);
    let (status, doc) = h.get_json("/openapi.json").await;
    assert_eq!(status, 200);
    assert!(doc["paths"]["/api/chat"].is_object());
    let metrics = h
        .client
        .get(h.url("/metrics"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(metrics.status().as_u16(), 200);
    let (status, _) = h.get_json("/no/such/route").await;
    assert_eq!(status, 404);
    let response = h
        .client
        .delete(h.url("/api/chat"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status().as_u16(), 405);
}
