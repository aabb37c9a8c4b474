//! Faults that lose data if anything does: chat killed with `kill -9`
//! while PostgreSQL is down, restarted while it is still down. Every
//! exchange answered 2xx must be in `messages` once PostgreSQL is back.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use test_support::{ServiceProcess, TestPostgres, fresh_prefix, shared_redis};

use crate::env;

/// Sends `n` chats to `chat`; returns the message ids of those answered 200
/// and how many were not.
async fn chats(http: &reqwest::Client, chat: &str, phase: &str, n: usize) -> (Vec<String>, usize) {
    let sends = (0..n).map(|i| {
        http.post(format!("{chat}/chat"))
            .json(&json!({"user_id": phase, "message": format!("{phase} {i}")}))
            .send()
    });
    let mut answered = Vec::new();
    let mut failed = 0;
    for response in futures::future::join_all(sends).await {
        match response {
            Ok(r) if r.status() == StatusCode::OK => {
                let body: serde_json::Value = r.json().await.unwrap();
                answered.push(body["message_id"].as_str().unwrap().to_owned());
            }
            _ => failed += 1,
        }
    }
    (answered, failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_database_outage_loses_no_answered_exchange() {
    let pg = TestPostgres::start();
    let db_url = pg.fresh_database().await;
    let sim =
        ServiceProcess::spawn_async("ollama-sim", &env(&[("OLLAMA_SIM_PORT", "0".into())])).await;
    let outbox = test_support::process::unique_outbox();
    let chat_env = env(&[
        ("CHATBOT__CHAT__SERVER__PORT", "0".into()),
        ("CHATBOT__CHAT__SERVER__METRICS_PORT", "0".into()),
        ("CHATBOT__DATABASE__URL", db_url.clone()),
        ("CHATBOT__REDIS__URL", shared_redis().url()),
        ("CHATBOT__SESSION__KEY_PREFIX", fresh_prefix()),
        ("CHATBOT__OLLAMA__URL", sim.base_url()),
        (test_support::process::OUTBOX_VAR, outbox),
    ]);
    let http = reqwest::Client::new();
    let mut first = ServiceProcess::spawn_async("chat", &chat_env).await;
    let mut answered = HashSet::new();
    let mut table = Vec::new();

    let (ids, failed) = chats(&http, &first.base_url(), "before", 20).await;
    table.push(("database up", ids.len(), failed));
    answered.extend(ids);

    pg.stop();
    let (ids, failed) = chats(&http, &first.base_url(), "outage", 50).await;
    table.push(("database down", ids.len(), failed));
    answered.extend(ids);
    let killed = std::process::Command::new("kill")
        .args(["-9", &first.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    test_support::poll::until("chat to die", Duration::from_secs(5), || {
        let running = first.is_running();
        async move { (!running).then_some(()) }
    })
    .await;

    // Restarted while the database is still down: it starts, and keeps
    // what it answers.
    let second = ServiceProcess::spawn_async("chat", &chat_env).await;
    let (ids, failed) = chats(&http, &second.base_url(), "restarted", 20).await;
    table.push(("restarted, database down", ids.len(), failed));
    answered.extend(ids);

    pg.start_again();
    let started = Instant::now();
    let stored: HashSet<String> = test_support::poll::until(
        "every answered exchange to be stored",
        Duration::from_secs(60),
        || async {
            let Ok(db) =
                tokio::time::timeout(Duration::from_secs(2), test_support::app::connect(&db_url))
                    .await
            else {
                return None;
            };
            let rows = db.query("SELECT id::text FROM messages", &[]).await.ok()?;
            let stored: HashSet<String> = rows.iter().map(|r| r.get(0)).collect();
            answered.is_subset(&stored).then_some(stored)
        },
    )
    .await;
    eprintln!("phase | answered 2xx | not answered");
    for (phase, ok, failed) in &table {
        eprintln!("{phase} | {ok} | {failed}");
    }
    eprintln!(
        "stored {} rows for {} answered exchanges, {:?} after the database came back; lost 0",
        stored.len(),
        answered.len(),
        started.elapsed()
    );
    assert_eq!(answered.len(), 90, "every chat was answered: {table:?}");
    assert_eq!(stored.len(), answered.len(), "each exchange stored once");
}

/// The fault suite (`scripts/faults.py`) at a small size: every phase, its
/// table printed, and its own checks (nothing accepted lost, no 500, one
/// backend down leaves the chats answered, slow bodies cut off with 408,
/// the open breaker answering at once). Beside the rest of the suite on two
/// cores, "at once" is under 500 ms here, against the 1 s first-token
/// timeout the breaker saves; the 50 ms target is measured at full size
/// (docs/resilience.md).
#[test]
fn the_fault_suite_passes_at_a_small_size() {
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let output = std::process::Command::new("python3")
        .arg(crate::repo_root().join("scripts/faults.py"))
        .args(["--profile", profile, "--rate", "20", "--seconds", "6"])
        .args(["--max-breaker-ms", "500"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    eprintln!("{said}");
    assert!(
        output.status.success(),
        "{said}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(said.contains("| postgres down, kill -9 chat |"), "{said}");
    assert!(said.contains("lost: 0"), "{said}");
}
