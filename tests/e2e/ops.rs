//! `chatbot-ops` as an operator runs it: the built binary as a process,
//! configured through `config/default.toml` and `CHATBOT__…` variables,
//! against the real stack (services, PostgreSQL, Redis, the simulator)
//! writing its log files, and a real Prometheus loaded with the shipped
//! configuration and rules. Exit codes, tables and JSON of `health`,
//! `daily-check` and `checklist` with everything up, then with a disk
//! threshold crossed, Prometheus not configured, backups missing or old,
//! LLM failures, Redis stopped, and the aggregator unreachable.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};
use test_support::process::Run;
use test_support::{TestRedis, free_port};

use crate::monitoring::{Ports, set_llm_error_rate, start_prometheus, wait_for_data};
use crate::{Stack, repo_root};

/// Thresholds that no machine's disk or memory crosses, so the checks'
/// outcome does not depend on the machine running the test.
const LENIENT: [(&str, &str); 4] = [
    ("CHATBOT__AGGREGATOR__DISK_WARN_FREE_PERCENT", "0"),
    ("CHATBOT__AGGREGATOR__DISK_FAIL_FREE_PERCENT", "0"),
    ("CHATBOT__AGGREGATOR__MEMORY_WARN_AVAILABLE_PERCENT", "0"),
    ("CHATBOT__AGGREGATOR__MEMORY_FAIL_AVAILABLE_PERCENT", "0"),
];

/// `chatbot-ops` with an environment.
#[derive(Clone)]
struct Ops {
    env: Vec<(String, String)>,
}

impl Ops {
    /// Pointed at `stack`, its log files, `backups` and `prometheus`.
    fn new(stack: &Stack, logs: &Path, backups: &Path, prometheus: &str) -> Self {
        let mut env: Vec<(String, String)> = vec![
            (
                "CHATBOT_CONFIG_DIR".into(),
                path(&repo_root().join("config")),
            ),
            (
                "CHATBOT__OPS__HEALTH_URL".into(),
                stack.aggregator.base_url(),
            ),
            ("CHATBOT__OPS__PROMETHEUS_URL".into(), prometheus.into()),
            ("CHATBOT__OPS__BACKUP__DIR".into(), path(backups)),
            ("CHATBOT__LOG__DIR".into(), path(logs)),
            ("CHATBOT__DATABASE__URL".into(), stack.db_url.clone()),
        ];
        for (service, process) in [
            ("GATEWAY", &stack.gateway),
            ("CHAT", &stack.chat),
            ("SESSION", &stack.session),
        ] {
            let key = format!("CHATBOT__AGGREGATOR__SERVICES__{service}");
            env.push((key, process.base_url()));
        }
        env.extend(LENIENT.iter().map(|(k, v)| ((*k).into(), (*v).into())));
        Self { env }
    }

    /// The same with `key` set to `value`.
    fn with(&self, key: &str, value: &str) -> Self {
        let mut ops = self.clone();
        ops.env.retain(|(k, _)| k != key);
        ops.env.push((key.into(), value.into()));
        ops
    }

    /// Runs `chatbot-ops ARGS` from the repository root.
    fn run(&self, args: &[&str]) -> Run {
        let output = Command::new(test_support::process::binary_path("chatbot-ops"))
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(repo_root())
            .output()
            .unwrap();
        Run::from(output)
    }

    /// Runs `chatbot-ops ARGS --json` until `done` holds for its JSON (up to
    /// 60 s); returns the last run.
    async fn until(&self, args: &[&str], done: impl Fn(&Run) -> bool) -> Run {
        let args: Vec<&str> = args.iter().copied().chain(["--json"]).collect();
        for _ in 0..120 {
            let run = self.run(&args);
            if done(&run) {
                return run;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let last = self.run(&args);
        panic!(
            "chatbot-ops {args:?} never got there: exit {}\n{}{}",
            last.code, last.stdout, last.stderr
        );
    }
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// The row of `report` whose check starts with `check`.
fn row<'a>(report: &'a Value, check: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["check"].as_str().unwrap().starts_with(check))
        .unwrap_or_else(|| panic!("no row {check}: {report:#}"))
}

/// `check: status` for every row that is not `status`.
fn rows_not(report: &Value, status: &str) -> Vec<String> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] != status)
        .map(|r| {
            format!(
                "{}: {} {} {}",
                r["check"], r["status"], r["value"], r["detail"]
            )
        })
        .collect()
}

/// A good backup (complete manifest) started `hours` ago, in `dir`.
fn write_backup(dir: &Path, hours: i64) {
    let started = Utc::now() - chrono::Duration::hours(hours);
    let backup = dir.join(started.format("%Y%m%dT%H%M%SZ").to_string());
    std::fs::create_dir_all(&backup).unwrap();
    std::fs::write(backup.join("manifest.json"), r#"{"complete": true}"#).unwrap();
}

/// How many rules alerts/*.yml hold.
fn shipped_rules() -> usize {
    std::fs::read_dir(repo_root().join("alerts"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .map(|text| {
            text.lines()
                .filter(|l| {
                    ["- alert:", "- record:"]
                        .iter()
                        .any(|k| l.trim_start().starts_with(k))
                })
                .count()
        })
        .sum()
}

/// Five chats that succeed, or four that fail in the LLM, twice, with a
/// scrape of the first round by `prometheus` in between: a rate needs two
/// samples, and a counter's first sample already holds what came before it.
/// Failing, the first three are 502 `llm_error` and open chat's breaker, so
/// the fourth is 503 `llm_unavailable` at once; both series then exist, and
/// the second round (503, or 502 for the breaker's probe) grows one of them.
async fn traffic(stack: &Stack, prometheus: &str, failing: bool) {
    let (count, counter) = if failing {
        (4, "chatbot_errors_total")
    } else {
        (5, "chatbot_messages_total")
    };
    if failing {
        set_llm_error_rate(stack, 1.0).await;
    }
    let expected = |round: usize, i: usize| -> &'static [u16] {
        match (failing, round, i) {
            (false, ..) => &[200],
            (true, 0, 0..3) => &[502],
            (true, 0, _) => &[503],
            (true, ..) => &[502, 503],
        }
    };
    for round in 0..2 {
        for i in 0..count {
            let message =
                json!({"user_id": format!("ops-{i}"), "message": "How do I reset my password?"});
            let got = stack.chat(message).await.0.as_u16();
            let wanted = expected(round, i);
            assert!(
                wanted.contains(&got),
                "round {round}, chat {i}: {got}, expected {wanted:?}"
            );
        }
        if round == 0 {
            let scraped = format!("{counter}{{job=\"chatbot\"}}");
            wait_for_data(&stack.http, prometheus, &scraped).await;
        }
    }
    if failing {
        set_llm_error_rate(stack, 0.0).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_daily_check_and_checklists_against_the_running_stack() {
    let redis = TestRedis::start();
    let scratch = tempfile::tempdir().unwrap();
    let logs = scratch.path().join("logs");
    let backups = scratch.path().join("backups");
    let mut service_env = vec![("CHATBOT__LOG__DIR", path(&logs))];
    service_env.extend(LENIENT.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let stack = Stack::start_configured(&redis.url(), &[], &service_env).await;
    let monitoring = scratch.path().join("prometheus");
    std::fs::create_dir_all(&monitoring).unwrap();
    let prometheus = start_prometheus(&stack, &Ports::free(), &monitoring);
    let ops = Ops::new(&stack, &logs, &backups, &prometheus.base_url());

    // Everything up: health 0, its table names every component.
    ops.until(&["health"], |run| run.code == 0).await;
    let health = ops.run(&["health"]);
    assert_eq!(health.code, 0, "{}{}", health.stdout, health.stderr);
    for needle in [
        "health: OK",
        "database",
        "redis",
        "ollama",
        "disk",
        "memory",
        "chat",
    ] {
        assert!(
            health.stdout.contains(needle),
            "{needle}:\n{}",
            health.stdout
        );
    }

    // With traffic in Prometheus and a fresh backup, every daily check passes.
    traffic(&stack, &prometheus.base_url(), false).await;
    write_backup(&backups, 1);
    let measured = |run: &Run| {
        run.code == 0
            && ["error ratio", "p95"]
                .iter()
                .all(|c| row(&run.json(), c)["status"] == "ok")
    };
    // A rate needs two scrapes that saw the counters grow; under load a
    // scrape may time out, so a message goes in before every retry.
    let mut daily = ops.run(&["daily-check", "--json"]);
    for _ in 0..120 {
        if measured(&daily) {
            break;
        }
        let message = json!({"user_id": "ops-more", "message": "How do I reset my password?"});
        assert_eq!(stack.chat(message).await.0, 200);
        tokio::time::sleep(Duration::from_millis(500)).await;
        daily = ops.run(&["daily-check", "--json"]);
    }
    assert!(measured(&daily), "{}\n{}", daily.stdout, daily.stderr);
    let daily = daily.json();
    assert!(
        rows_not(&daily, "ok").is_empty(),
        "{:#?}",
        rows_not(&daily, "ok")
    );
    assert_eq!(daily["outcome"], "ok");
    assert_eq!(row(&daily, "error ratio")["value"], "0.000%");
    assert_eq!(row(&daily, "error logs")["value"], "0");
    assert_eq!(row(&daily, "backup")["value"], "1.0 h old");
    for check in [
        "health verdict",
        "memory",
        "disk /",
        "service gateway",
        "service chat",
        "service session",
        "service health-aggregator",
    ] {
        row(&daily, check);
    }
    row(&daily, &format!("disk {}", logs.display()));
    let text = ops.run(&["daily-check"]);
    assert_eq!(text.code, 0);
    assert!(
        text.stdout.contains("daily check\ncheck") && text.stdout.ends_with("result: OK\n"),
        "{}",
        text.stdout
    );

    // The checklists: every automatic item passes; the rest is for a person.
    let checklist = ops.run(&["checklist", "daily", "--json"]);
    assert_eq!(checklist.code, 0, "{}", checklist.stdout);
    let checklist = checklist.json();
    assert!(
        rows_not(&checklist, "ok").is_empty(),
        "{:#?}",
        rows_not(&checklist, "ok")
    );
    for item in [
        "Service health status",
        "Error rate below 0.1%",
        "Response times within SLA",
        "Database connections healthy (verdict)",
        "Database connections healthy (in use)",
        "Disk space adequate",
        "Memory usage normal",
    ] {
        row(&checklist, item);
    }
    let weekly = ops
        .until(&["checklist", "weekly"], |run| run.code == 0)
        .await
        .json();
    assert!(
        rows_not(&weekly, "ok").is_empty(),
        "{:#?}",
        rows_not(&weekly, "ok")
    );
    let rules = format!("6 groups, {} rules", shipped_rules());
    assert_eq!(row(&weekly, "Alert rules validated")["value"], json!(rules));
    assert!(
        row(&weekly, "Metrics storage adequate")["value"]
            .as_str()
            .unwrap()
            .starts_with("retention 15d")
    );
    assert_eq!(weekly["manual"].as_array().unwrap().len(), 2);
    let text = ops.run(&["checklist", "weekly"]);
    assert!(
        text.stdout.contains("to do by a person") && text.stdout.contains("Dashboard updated"),
        "{}",
        text.stdout
    );
    let monthly = ops.run(&["checklist", "monthly"]);
    assert_eq!(monthly.code, 0);
    assert!(!monthly.stdout.contains("checked"), "{}", monthly.stdout);
    for item in [
        "Performance trends analyzed",
        "Capacity planning updated",
        "Security patches applied",
        "Documentation updated",
        "Incident reviews completed",
    ] {
        assert!(monthly.stdout.contains(item), "{item}:\n{}", monthly.stdout);
    }

    // A disk threshold crossed fails the disk rows, and the run (exit 2).
    let full = ops
        .with("CHATBOT__AGGREGATOR__DISK_WARN_FREE_PERCENT", "100")
        .with("CHATBOT__AGGREGATOR__DISK_FAIL_FREE_PERCENT", "100");
    let run = full.run(&["daily-check", "--json"]);
    assert_eq!(run.code, 2, "{}", run.stdout);
    let failed: Vec<String> = rows_not(&run.json(), "ok");
    assert!(
        !failed.is_empty() && failed.iter().all(|r| r.starts_with("\"disk ")),
        "{failed:#?}"
    );

    // Without Prometheus its rows are skipped, saying why, and change nothing;
    // the alert rules are checked with promtool on alerts/ instead.
    let local = ops.with("CHATBOT__OPS__PROMETHEUS_URL", "");
    let run = local.run(&["daily-check", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    let report = run.json();
    for check in ["error ratio", "p95"] {
        assert_eq!(row(&report, check)["status"], "skipped");
        assert_eq!(
            row(&report, check)["detail"],
            "ops.prometheus_url is not set"
        );
    }
    let run = local.run(&["checklist", "weekly", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    let report = run.json();
    assert_eq!(row(&report, "Metrics storage")["status"], "skipped");
    assert_eq!(
        row(&report, "Alert rules")["detail"],
        "promtool check rules alerts/*.yml"
    );

    // Backups: none ever taken warns (1); none good, or too old, fails (2).
    let never = ops.with(
        "CHATBOT__OPS__BACKUP__DIR",
        &path(&scratch.path().join("none")),
    );
    let run = never.run(&["daily-check", "--json"]);
    assert_eq!(
        (run.code, &row(&run.json(), "backup")["value"]),
        (1, &json!("never")),
        "{}",
        run.stdout
    );
    let old = scratch.path().join("old");
    write_backup(&old, 30);
    let run = ops
        .with("CHATBOT__OPS__BACKUP__DIR", &path(&old))
        .run(&["daily-check", "--json"]);
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert_eq!(rows_not(&run.json(), "ok").len(), 1, "{}", run.stdout);
    assert_eq!(row(&run.json(), "backup")["status"], "fail");

    // LLM failures: the error ratio in Prometheus crosses 0.1 %.
    traffic(&stack, &prometheus.base_url(), true).await;
    let fails = |run: &Run| row(&run.json(), "error ratio")["status"] == "fail";
    let run = ops.until(&["daily-check"], fails).await;
    assert_eq!(run.code, 2, "{}", run.stdout);

    // Redis stopped: the verdict is ERROR naming redis (health exits 2), and
    // the session service's ERROR lines are counted and shown.
    redis.stop();
    for _ in 0..3 {
        let url = format!(
            "{}/api/sessions/{}",
            stack.gateway.base_url(),
            uuid::Uuid::new_v4()
        );
        assert_eq!(stack.http.get(url).send().await.unwrap().status(), 503);
    }
    // (chat's readiness, which needs Redis, may turn ERROR first.)
    let redis_down =
        |run: &Run| run.code == 2 && run.json()["services"]["redis"]["status"] == "ERROR";
    ops.until(&["health"], redis_down).await;
    let health = ops.run(&["health"]);
    assert_eq!(health.code, 2);
    let redis_line = health
        .stdout
        .lines()
        .find(|l| l.starts_with("redis"))
        .unwrap();
    assert!(redis_line.contains("ERROR"), "{}", health.stdout);
    let run = ops.run(&["daily-check", "--json"]);
    assert_eq!(run.code, 2, "{}", run.stdout);
    let report = run.json();
    let verdict = row(&report, "health verdict");
    assert_eq!(
        (&verdict["status"], &verdict["value"]),
        (&json!("fail"), &json!("ERROR"))
    );
    assert!(
        verdict["detail"].as_str().unwrap().contains("redis: ERROR"),
        "{verdict}"
    );
    let errors = row(&report, "error logs");
    assert_eq!(errors["status"], "warn");
    assert!(
        errors["detail"].as_str().unwrap().contains("session"),
        "{errors}"
    );
    assert!(
        report["errors"]["by_component"]["session"]
            .as_u64()
            .unwrap()
            >= 3
    );
    let latest = report["errors"]["latest"][0]["message"].as_str().unwrap();
    assert!(latest.starts_with("session store failed"), "{latest}");
    let text = ops.run(&["daily-check"]);
    assert!(
        text.stdout.contains("latest errors") && text.stdout.ends_with("result: FAIL\n"),
        "{}",
        text.stdout
    );

    // The aggregator unreachable: health cannot answer (3); daily-check
    // fails that row and goes on with the others (2).
    let nowhere = ops.with(
        "CHATBOT__OPS__HEALTH_URL",
        &format!("http://127.0.0.1:{}", free_port()),
    );
    let run = nowhere.run(&["health"]);
    assert_eq!(run.code, 3, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("the health verdict at") && run.stderr.contains("unreachable"),
        "{}",
        run.stderr
    );
    let run = nowhere.run(&["daily-check", "--json"]);
    assert_eq!(run.code, 2, "{}", run.stdout);
    let report = run.json();
    assert_eq!(row(&report, "health verdict")["status"], "fail");
    assert!(
        row(&report, "health verdict")["detail"]
            .as_str()
            .unwrap()
            .contains("unreachable")
    );
    assert_eq!(row(&report, "service health-aggregator")["value"], "down");
    assert_eq!(row(&report, "memory")["status"], "ok");
}
