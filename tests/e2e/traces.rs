//! Traces and logs across processes: one W3C trace id from the client
//! through gateway, chat and the LLM (and session, for a session read), in
//! every service's ECS log lines and back in the response headers; spans exported over OTLP/HTTP
//! and logs written to rotated files when so configured.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use test_support::{N8nStandIn, ServiceProcess};

use crate::{Stack, env};

/// A client's trace id whose 16 bytes are the ASCII text `traced-by-client`,
/// so it can also be found in a protobuf body.
const TRACE_ID: &str = "7472616365642d62792d636c69656e74";
const CLIENT_SPAN_ID: &str = "00f067aa0ba902b7";

/// The captured lines of `process` that are JSON objects with `trace.id` =
/// `trace_id`, waiting up to 5 s for the first (logs arrive through pipes).
async fn lines_with_trace(process: &ServiceProcess, trace_id: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let lines: Vec<Value> = process
            .logs()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|l| l["trace.id"] == trace_id)
            .collect();
        if !lines.is_empty() || Instant::now() >= deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_id_runs_through_every_service_and_back_to_the_client() {
    let stack = Stack::start(&[]).await;

    let response = stack
        .http
        .post(format!("{}/api/chat", stack.gateway.base_url()))
        .header("traceparent", format!("00-{TRACE_ID}-{CLIENT_SPAN_ID}-01"))
        .json(&json!({"user_id": "tracer", "message": "Hello, where is my parcel?"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-trace-id"], TRACE_ID);
    let traceparent = response.headers()["traceparent"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        traceparent.starts_with(&format!("00-{TRACE_ID}-")) && traceparent.ends_with("-01"),
        "{traceparent}"
    );
    assert!(
        !traceparent.contains(CLIENT_SPAN_ID),
        "the gateway's own span is named: {traceparent}"
    );
    let answer: Value = response.json().await.unwrap();
    // Reading the conversation back goes through the session service.
    let read = stack
        .http
        .get(format!(
            "{}/api/sessions/{}",
            stack.gateway.base_url(),
            answer["session_id"].as_str().unwrap()
        ))
        .header("traceparent", format!("00-{TRACE_ID}-{CLIENT_SPAN_ID}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::OK);

    for process in [&stack.gateway, &stack.chat, &stack.session, &stack.llm] {
        let lines = lines_with_trace(process, TRACE_ID).await;
        assert!(
            !lines.is_empty(),
            "{} logged no line with trace.id {TRACE_ID}:\n{}",
            process.name(),
            process.logs().join("\n")
        );
        assert!(
            lines
                .iter()
                .all(|l| l["span.id"].as_str().unwrap().len() == 16)
        );
    }
    // The line operators look for first carries the trace and the context
    // fields, and never the message text.
    let chat_lines = lines_with_trace(&stack.chat, TRACE_ID).await;
    let processed = chat_lines
        .iter()
        .find(|l| l["message"] == "message processed")
        .unwrap_or_else(|| panic!("no `message processed` line in the trace: {chat_lines:#?}"));
    assert_eq!(processed["session_id"], answer["session_id"]);
    assert_eq!(processed["user_id"], "tracer");
    assert_eq!(processed["message_length"], 26);
    assert!(processed["processing_time_ms"].is_u64());
    assert!(
        !stack
            .chat
            .logs()
            .iter()
            .any(|l| l.contains("where is my parcel")),
        "message texts are not logged by default"
    );

    // Without a traceparent, the gateway starts a new trace and says which.
    let (fresh_a, fresh_b) = (untraced_chat(&stack).await, untraced_chat(&stack).await);
    for fresh in [&fresh_a, &fresh_b] {
        assert_eq!(fresh.len(), 32, "{fresh}");
        assert!(fresh.chars().all(|c| c.is_ascii_hexdigit()), "{fresh}");
        assert_ne!(fresh, &"0".repeat(32));
        assert_ne!(fresh, TRACE_ID);
        assert!(!lines_with_trace(&stack.chat, fresh).await.is_empty());
    }
    assert_ne!(fresh_a, fresh_b, "every request gets its own trace");

    // Services write log lines and nothing else to stdout and stderr.
    for process in [
        &stack.gateway,
        &stack.chat,
        &stack.session,
        &stack.aggregator,
    ] {
        for line in process.logs() {
            let parsed: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("{}: not a JSON line ({e}): {line}", process.name()));
            for key in [
                "@timestamp",
                "log.level",
                "message",
                "service.name",
                "log.logger",
            ] {
                assert!(
                    parsed.get(key).is_some(),
                    "{}: no {key}: {line}",
                    process.name()
                );
            }
        }
    }
}

async fn untraced_chat(stack: &Stack) -> String {
    let response = stack
        .http
        .post(format!("{}/api/chat", stack.gateway.base_url()))
        .json(&json!({"user_id": "tracer", "message": "Hello again"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let id = response.headers()["x-trace-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let traceparent = response.headers()["traceparent"].to_str().unwrap();
    assert!(
        traceparent.starts_with(&format!("00-{id}-")),
        "{traceparent}"
    );
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_go_to_otlp_and_logs_to_rotated_files_when_configured() {
    // The n8n stand-in records any POST under /webhook/: here, OTLP batches.
    let collector = N8nStandIn::start().await;
    let endpoint = format!("{}/webhook/v1/traces", collector.base_url());
    let log_dir = std::env::temp_dir().join(format!("chatbot-e2e-logs-{}", uuid::Uuid::new_v4()));
    let gateway = ServiceProcess::spawn_async(
        "gateway",
        &env(&[
            ("CHATBOT__GATEWAY__SERVER__PORT", "0".into()),
            // A gateway on its own, without the key table: keys off.
            ("CHATBOT__AUTH__ENABLED", "false".into()),
            ("CHATBOT__TRACING__OTLP_ENDPOINT", endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
            ("CHATBOT__LOG__DIR", log_dir.display().to_string()),
            ("CHATBOT__LOG__MAX_FILE_BYTES", "1024".into()),
            ("CHATBOT__LOG__MAX_FILES", "2".into()),
        ]),
    )
    .await;
    let response = reqwest::Client::new()
        .get(format!("{}/livez", gateway.base_url()))
        .header("traceparent", format!("00-{TRACE_ID}-{CLIENT_SPAN_ID}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-trace-id"], TRACE_ID);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let exported = loop {
        let requests = collector.requests();
        let found = requests.into_iter().find(|r| {
            r.body
                .as_str()
                .is_some_and(|body| body.contains("traced-by-client"))
        });
        if found.is_some() || tokio::time::Instant::now() >= deadline {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let exported = exported.unwrap_or_else(|| {
        panic!(
            "no span of trace {TRACE_ID} reached the collector: {:?}\n{}",
            collector.requests(),
            gateway.logs().join("\n")
        )
    });
    assert_eq!(exported.path, "/webhook/v1/traces");
    assert_eq!(
        exported.header("content-type"),
        Some("application/x-protobuf")
    );
    let body = exported.body.as_str().unwrap();
    assert!(body.contains("gateway"), "the resource names the service");

    // The files hold what stdout did, rotated at 1024 bytes, and no error.
    for _ in 0..5 {
        let response = reqwest::get(format!("{}/api/sessions/not-a-uuid", gateway.base_url()))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
    let mut names: Vec<String> = std::fs::read_dir(&log_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(
        names.contains(&"gateway.log.1".to_owned()),
        "rotated: {names:?}"
    );
    assert!(
        !names.iter().any(|n| n.ends_with(".3")),
        "two kept: {names:?}"
    );
    let mut logged = String::new();
    for name in &names {
        let text = std::fs::read_to_string(log_dir.join(name)).unwrap();
        // A file passes its size by less than one write: at most the
        // writer's 8 KiB buffer of whole lines.
        assert!(text.len() < 1024 + 8 * 1024, "{name}: {} bytes", text.len());
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "{name}: whole lines"
        );
        logged.push_str(&text);
    }
    assert!(logged.contains("/api/sessions/not-a-uuid"), "{logged}");
    assert!(
        gateway
            .logs()
            .iter()
            .any(|line| line.contains("\"log.level\":\"warn\"")
                && line.contains("auth.enabled = false")),
        "running without keys is announced"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let missing = loop {
        let stdout = gateway.logs();
        let missing: Vec<&str> = logged
            .lines()
            .filter(|line| !stdout.iter().any(|l| l == line))
            .collect();
        if missing.is_empty() || Instant::now() >= deadline {
            break missing.join("\n");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(missing, "", "every line in the files was on stdout too");
    let errors = std::fs::read_to_string(log_dir.join("gateway.error.log")).unwrap();
    assert_eq!(errors, "", "no error was logged");
    std::fs::remove_dir_all(&log_dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_texts_are_logged_only_when_configured() {
    let on = [("CHATBOT__LOG__INCLUDE_MESSAGE_TEXT", "true".to_owned())];
    let stack = crate::Stack::start_configured(&test_support::shared_redis().url(), &[], &on).await;
    let (status, reply) = stack
        .chat(serde_json::json!({"user_id": "texts", "message": "a message worth reading"}))
        .await;
    assert_eq!(status, 200);
    let line = test_support::poll::until(
        "a message processed line",
        std::time::Duration::from_secs(5),
        || async {
            stack
                .chat
                .logs()
                .into_iter()
                .find(|l| l.contains("\"message processed\""))
        },
    )
    .await;
    let line: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(line["message_text"], "a message worth reading");
    assert_eq!(line["reply_text"], reply["reply"]);
}
