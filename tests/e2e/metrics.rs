//! After traffic, every service's `/metrics` and the aggregator's combined
//! `/metrics/all` carry the documented names and labels and pass
//! `promtool check metrics`.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::Stack;

/// Runs `promtool check metrics` on `text`; returns its complaints.
fn promtool_check(text: &str) -> Result<(), String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed by scripts/setup.sh");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

async fn scrape(http: &reqwest::Client, url: &str) -> String {
    http.get(url).send().await.unwrap().text().await.unwrap()
}

fn has(text: &str, prefix: &str) -> bool {
    text.lines().any(|l| l.starts_with(prefix))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_have_the_documented_names_and_pass_promtool() {
    let mut stack = Stack::start(&[]).await;
    let gateway = stack.gateway.base_url();
    let (status, _) = stack
        .chat(json!({"user_id": "m", "message": "URGENT: hello?"}))
        .await;
    assert_eq!(status, 200);
    stack.chat(json!({"user_id": "m", "message": ""})).await;
    stack
        .http
        .get(format!("{gateway}/no/such/route/{}", uuid::Uuid::new_v4()))
        .send()
        .await
        .unwrap();
    let refused = reqwest::Client::new()
        .post(format!("{gateway}/api/chat"))
        .json(&json!({"user_id": "m", "message": "no key"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    stack.llm.terminate();
    let (status, _) = stack
        .chat(json!({"user_id": "m", "message": "still there?"}))
        .await;
    assert_eq!(status, 503);

    // /metrics is on the metrics listener only, not on the API's port.
    let on_api = stack
        .http
        .get(format!("{gateway}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(on_api.status(), 404);
    let gw = scrape(
        &stack.http,
        &format!("{}/metrics", stack.gateway.metrics_url()),
    )
    .await;
    assert!(
        has(
            &gw,
            "chatbot_rejected_requests_total{reason=\"unauthorized\""
        ),
        "{gw}"
    );
    assert!(
        has(
            &gw,
            "http_request_duration_seconds_bucket{method=\"POST\",route=\"/api/chat\",status_code=\"200\",le=\"0.005\"}"
        ),
        "{gw}"
    );
    assert!(has(
        &gw,
        "http_request_duration_seconds_bucket{method=\"POST\",route=\"/api/chat\",status_code=\"422\""
    ));
    assert!(
        has(
            &gw,
            "http_request_duration_seconds_count{method=\"GET\",route=\"unmatched\",status_code=\"404\"}"
        ),
        "unknown routes fold into one value"
    );
    assert!(
        !gw.contains("/no/such/route"),
        "raw paths never become labels"
    );
    assert!(has(&gw, "process_resident_memory_bytes "));
    assert!(has(&gw, "process_open_fds "));

    let chat = scrape(
        &stack.http,
        &format!("{}/metrics", stack.chat.metrics_url()),
    )
    .await;
    assert!(
        has(
            &chat,
            "chatbot_messages_total{api=\"native\",type=\"greeting\",urgency=\"HIGH\"} 1"
        ),
        "{chat}"
    );
    assert!(
        has(
            &chat,
            "chatbot_errors_total{component=\"llm\",type=\"llm_unavailable\"} 1"
        ),
        "{chat}"
    );
    for name in [
        "chatbot_llm_request_duration_seconds_bucket",
        "chatbot_llm_time_to_first_token_seconds_bucket",
        "chatbot_llm_time_per_output_token_seconds_bucket",
        "chatbot_llm_model_load_duration_seconds_bucket",
        "chatbot_llm_tokens_total{direction=\"output\"",
        "chatbot_pool_connections{pool=\"postgres\"",
        "process_cpu_seconds_total ",
    ] {
        assert!(has(&chat, name), "{name} missing:\n{chat}");
    }

    // The gauge is refreshed every 5 s: one conversation succeeded (a failed
    // first exchange leaves no session).
    let session_metrics = format!("{}/metrics", stack.session.metrics_url());
    let session = test_support::poll::until(
        "chatbot_active_sessions 1 on the session service",
        Duration::from_secs(10),
        || async {
            let session = scrape(&stack.http, &session_metrics).await;
            has(&session, "chatbot_active_sessions 1").then_some(session)
        },
    )
    .await;

    let aggregator = stack.aggregator.base_url();
    let own = scrape(
        &stack.http,
        &format!("{}/metrics", stack.aggregator.metrics_url()),
    )
    .await;
    assert!(
        has(&own, "chatbot_dependency_up{component=\"ollama\"} 0"),
        "{own}"
    );
    assert!(has(&own, "chatbot_dependency_up{component=\"redis\"} 1"));
    assert!(has(
        &own,
        "chatbot_dependency_check_duration_seconds{component=\"database\"}"
    ));

    let all = scrape(&stack.http, &format!("{aggregator}/metrics/all")).await;
    assert!(all.contains("service=\"chat\""), "{all}");
    assert!(
        has(&all, "chatbot_active_sessions{service=\"session\"} 1"),
        "{all}"
    );
    for service in ["gateway", "chat", "session", "health-aggregator"] {
        assert!(
            all.contains(&format!(
                "process_resident_memory_bytes{{service=\"{service}\"}}"
            )),
            "{service}"
        );
    }

    for (name, text) in [
        ("gateway", &gw),
        ("chat", &chat),
        ("session", &session),
        ("aggregator", &own),
        ("all", &all),
    ] {
        promtool_check(text)
            .unwrap_or_else(|e| panic!("promtool check metrics failed for {name}:\n{e}"));
    }
}
