//! The official `ollama` Python client against the simulator: the strongest
//! check that the wire format is Ollama's.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ollama_sim::SimConfig;

use crate::helpers::start;

/// The interpreter: `CHATBOT_TEST_PYTHON`, else `<workspace>/.venv/bin/python`.
fn python() -> PathBuf {
    if let Some(path) = std::env::var_os("CHATBOT_TEST_PYTHON").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(".venv/bin/python")
}

const SETUP_HINT: &str = "run the test set-up first: `scripts/setup.sh --test` creates \
    <workspace>/.venv with `pip install ollama` (or point CHATBOT_TEST_PYTHON at a Python \
    that has the `ollama` package)";

#[tokio::test]
async fn official_python_client_understands_the_simulator() {
    let python = python();
    let probe = tokio::process::Command::new(&python)
        .args(["-c", "import ollama"])
        .output()
        .await;
    match probe {
        Err(error) => panic!(
            "cannot run the Python interpreter {} ({error}); {SETUP_HINT}",
            python.display()
        ),
        Ok(output) if !output.status.success() => panic!(
            "{} cannot `import ollama`: {}; {SETUP_HINT}",
            python.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        ),
        Ok(_) => {}
    }

    let h = start(SimConfig::default()).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ollama_client_check.py");
    let run = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(h.server.url())
        .env_remove("OLLAMA_HOST")
        .env("NO_PROXY", "*")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .unwrap_or_else(|_| panic!("the Python client check took more than 60 s"))
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the ollama client check failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    assert!(stdout.contains("ollama client check: OK"), "{stdout}");

    let stats = h.server.sim().stats();
    assert_eq!(stats.requests.chat, 5, "{stats:?}");
    assert_eq!(stats.requests.generate, 3, "{stats:?}");
}
