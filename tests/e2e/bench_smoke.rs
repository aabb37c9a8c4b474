//! The load benchmark (`scripts/bench.py`) run once at a tiny size, on the
//! debug build, to prove it works end to end. Nothing about speed is asserted.

use std::process::Command;

use serde_json::Value;

#[test]
fn the_benchmark_runs_and_writes_its_reports() {
    let out = std::env::temp_dir().join(format!("chatbot-bench-{}", std::process::id()));
    let profile = std::env::current_exe().unwrap();
    let profile = profile.parent().and_then(|d| d.parent()).unwrap();
    let output = Command::new("python3")
        .arg(crate::repo_root().join("scripts/bench.py"))
        .args(["--profile", &profile.file_name().unwrap().to_string_lossy()])
        .args(["--rate", "20", "--health-rate", "50", "--seconds", "1"])
        .args(["--search", "20", "--search-seconds", "1", "--warmup", "1"])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let results: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    for run in ["floor", "chat", "openai", "stream", "health"] {
        assert!(
            results[run]["requests"].as_u64().unwrap() > 0,
            "{run}: {results}"
        );
        assert!(results[run]["p99_ms"].as_f64().is_some());
    }
    assert_eq!(results["chat"]["errors"], 0, "{results}");
    assert_eq!(results["openai"]["errors"], 0, "{results}");
    assert!(results["chat"]["overhead"]["p50_ms"].as_f64().is_some());
    assert!(results["search"][0]["sustained"].is_boolean(), "{results}");
    for service in ["gateway", "chat", "session", "health-aggregator"] {
        assert!(results["resources"][service]["rss_mb"].as_f64().unwrap() > 0.0);
    }
    let table = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(table.contains("| chat | 20 |"), "{table}");
    let _ = std::fs::remove_dir_all(&out);
}
