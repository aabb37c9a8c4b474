//! schemathesis fuzzes the gateway from its own `/openapi.json`: no server
//! error, no answer outside the documented schemas and statuses.

use std::path::PathBuf;
use std::process::Command;

use crate::Stack;

/// The venv's schemathesis (made by `scripts/setup.sh --test`).
fn schemathesis() -> PathBuf {
    let path = std::env::var_os("CHATBOT_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::repo_root().join(".venv"))
        .join("bin/schemathesis");
    assert!(
        path.exists(),
        "{} is missing: run the test set-up (scripts/setup.sh --test) first",
        path.display()
    );
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_failure() {
    let stack = Stack::start(&[]).await;
    let spec = format!("{}/openapi.json", stack.gateway.base_url());
    let report = std::env::temp_dir().join(format!("schemathesis-{}.txt", std::process::id()));
    let output = tokio::task::spawn_blocking(move || {
        Command::new(schemathesis())
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
