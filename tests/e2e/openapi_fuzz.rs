//! schemathesis fuzzes the gateway from its own `/openapi.json`: no server
//! error, no answer outside the documented schemas and statuses. Once with
//! the stack's API key, and once without any, where every `/api/*` route
//! must refuse (its `ignored_auth` check) and the rest still conform.

use std::process::{Command, Output};

use crate::{Stack, venv_tool};

async fn schemathesis(spec: String, extra: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(venv_tool("schemathesis"))
            .args(["run", &spec, "--checks", "all", "--max-examples", "60"])
            .args(["--workers", "2", "--exclude-path", "/metrics"])
            .args(extra)
            .env("SCHEMATHESIS_HOOKS", "")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn assert_passed(output: &Output, run: &str) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report =
        std::env::temp_dir().join(format!("schemathesis-{run}-{}.txt", std::process::id()));
    std::fs::write(&report, format!("{stdout}\n{stderr}")).ok();
    assert!(
        output.status.success(),
        "schemathesis ({run}) failed:\n{stdout}\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_failure() {
    let stack = Stack::start(&[]).await;
    let spec = format!("{}/openapi.json", stack.gateway.base_url());
    let with_key = vec![
        "--header".to_owned(),
        format!("Authorization: Bearer {}", stack.api_key),
    ];
    assert_passed(&schemathesis(spec.clone(), with_key).await, "with-key");
    assert_passed(&schemathesis(spec, Vec::new()).await, "without-key");
}
