//! schemathesis fuzzes the gateway from its own `/openapi.json`: no server
//! error, no answer outside the documented schemas and statuses.

use std::process::Command;

use crate::{Stack, venv_tool};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_failure() {
    let stack = Stack::start(&[]).await;
    let spec = format!("{}/openapi.json", stack.gateway.base_url());
    let report = std::env::temp_dir().join(format!("schemathesis-{}.txt", std::process::id()));
    let output = tokio::task::spawn_blocking(move || {
        Command::new(venv_tool("schemathesis"))
            .args([
                "run",
                &spec,
                "--checks",
                "all",
                "--max-examples",
                "60",
                "--workers",
                "2",
            ])
            .args(["--exclude-path", "/metrics"])
            .env("SCHEMATHESIS_HOOKS", "")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    std::fs::write(&report, format!("{stdout}\n{stderr}")).ok();
    assert!(
        output.status.success(),
        "schemathesis failed:\n{stdout}\n{stderr}"
    );
}
