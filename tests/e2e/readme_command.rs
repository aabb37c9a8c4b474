//! README command 1 (`scripts/run-local.sh`) as a new user runs it, moved to
//! free ports and a throwaway state directory, with no Ollama: it must start
//! local-llm (the real small model) and say so, bring the stack up, show two
//! real replies (not the simulator's echo), the stored rows and a healthy
//! verdict, and `stop` must stop everything.

use std::process::Command;

use test_support::free_port;

#[test]
fn run_local_shows_a_chat_and_stops_cleanly() {
    let state = tempfile_dir();
    let port = |name: &str| (name.to_owned(), free_port().to_string());
    let mut env: Vec<(String, String)> = vec![
        port("CHATBOT_PG_PORT"),
        port("CHATBOT_REDIS_PORT"),
        port("CHATBOT_PROMETHEUS_PORT"),
        port("CHATBOT_GATEWAY_PORT"),
        port("CHATBOT_CHAT_PORT"),
        port("CHATBOT_SESSION_PORT"),
        port("CHATBOT_AGGREGATOR_PORT"),
        port("CHATBOT_ALERTMANAGER_PORT"),
        port("CHATBOT_NODE_EXPORTER_PORT"),
        port("CHATBOT_PG_EXPORTER_PORT"),
        port("CHATBOT_REDIS_EXPORTER_PORT"),
        (
            "CHATBOT_OLLAMA_URL".into(),
            format!("http://127.0.0.1:{}", free_port()),
        ),
        (
            "CHATBOT_METRICS_PORTS".into(),
            format!(
                "{} {} {} {}",
                free_port(),
                free_port(),
                free_port(),
                free_port()
            ),
        ),
        ("CHATBOT_STATE_DIR".into(), state.clone()),
        ("CHATBOT_SKIP_BUILD".into(), "1".into()),
    ];
    env.push(("CHATBOT_PROFILE".into(), profile()));
    let script = crate::repo_root().join("scripts/run-local.sh");
    let run = |arg: &str| {
        Command::new("bash")
            .arg(&script)
            .arg(arg)
            .envs(env.iter().cloned())
            .output()
            .unwrap()
    };
    let started = run("start");
    let stopped = run("stop");
    let out = String::from_utf8_lossy(&started.stdout);
    let err = String::from_utf8_lossy(&started.stderr);
    assert!(started.status.success(), "run-local failed:\n{out}\n{err}");
    assert!(
        out.contains("No Ollama answers at") && out.contains("starting local-llm"),
        "it says it starts the local model:\n{out}"
    );
    let replies: Vec<&str> = out
        .lines()
        .filter_map(|line| line.trim().strip_prefix("\"reply\": \""))
        .collect();
    assert_eq!(replies.len(), 2, "two replies are shown:\n{out}");
    for reply in replies {
        assert!(
            reply.len() > 3 && !reply.starts_with("Echo:"),
            "a real model's reply: {reply}"
        );
    }
    assert!(
        out.contains("(2 rows)"),
        "the stored rows are shown:\n{out}"
    );
    assert!(
        out.contains("{\"status\":\"OK\",\"services\":{"),
        "the health verdict is shown:\n{out}"
    );
    assert!(
        out.contains("Making the demo API key") && out.contains("API key      cbk_"),
        "the demo key is made and shown:\n{out}"
    );
    let logs = std::path::Path::new(&state).join("logs");
    assert!(logs.join("chat.log").exists() && logs.join("chat.error.log").exists());
    let stop_out = String::from_utf8_lossy(&stopped.stdout);
    assert!(stopped.status.success());
    for name in [
        "gateway",
        "chat",
        "session",
        "health-aggregator",
        "local-llm",
        "prometheus",
        "prometheus-alertmanager",
        "prometheus-node-exporter",
        "prometheus-postgres-exporter",
        "prometheus-redis-exporter",
        "redis",
        "postgresql",
    ] {
        assert!(
            stop_out.contains(&format!("stopped {name}")),
            "{name} not stopped:\n{stop_out}"
        );
    }
    let _ = std::fs::remove_dir_all(&state);
}

/// The cargo profile the test binary was built with (`debug` or `release`).
fn profile() -> String {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    profile_dir
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn tempfile_dir() -> String {
    let dir = std::env::temp_dir().join(format!("chatbot-readme-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.display().to_string()
}
