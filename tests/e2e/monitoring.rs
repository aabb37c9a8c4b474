//! Monitoring as code, proven live: the stack, the PostgreSQL, Redis and node
//! exporters, Alertmanager and a real Prometheus loaded with the shipped
//! `deploy/prometheus/prometheus.yml` (ports moved, intervals shortened) and
//! the shipped `alerts/` rules (with `for:` set to 0 so the test need not
//! wait minutes). After traffic with errors, every recording and alerting
//! rule and every dashboard query is evaluated through the HTTP API; then
//! Redis is stopped and its alert must reach Alertmanager.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use test_support::external::External;
use test_support::{N8nStandIn, TestRedis, free_port};

use crate::{Stack, repo_root};

/// Every alert-rule file, copied with `for:` set to 0s.
pub(crate) fn rules_without_delays(dir: &Path) -> PathBuf {
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    for entry in std::fs::read_dir(repo_root().join("alerts")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
            let text = std::fs::read_to_string(&path).unwrap();
            let quick: Vec<String> = text
                .lines()
                .map(|line| match line.split_once("for:") {
                    Some((indent, _)) if indent.trim().is_empty() => format!("{indent}for: 0s"),
                    _ => line.to_owned(),
                })
                .collect();
            std::fs::write(rules.join(path.file_name().unwrap()), quick.join("\n")).unwrap();
        }
    }
    rules
}

/// The shipped Prometheus configuration, pointed at this test's ports.
fn prometheus_config(stack: &Stack, ports: &Ports, rules: &Path) -> String {
    let shipped =
        std::fs::read_to_string(repo_root().join("deploy/prometheus/prometheus.yml")).unwrap();
    let moves = [
        ("15s", "1s".to_owned()),
        ("../../alerts/*.yml", format!("{}/*.yml", rules.display())),
        ("127.0.0.1:9101", host_port(&stack.gateway.metrics_url())),
        ("127.0.0.1:9102", host_port(&stack.chat.metrics_url())),
        ("127.0.0.1:9103", host_port(&stack.session.metrics_url())),
        ("127.0.0.1:9104", host_port(&stack.aggregator.metrics_url())),
        ("127.0.0.1:9187", format!("127.0.0.1:{}", ports.postgres)),
        ("127.0.0.1:9121", format!("127.0.0.1:{}", ports.redis)),
        ("127.0.0.1:9100", format!("127.0.0.1:{}", ports.node)),
        (
            "127.0.0.1:9093",
            format!("127.0.0.1:{}", ports.alertmanager),
        ),
        ("127.0.0.1:9090", format!("127.0.0.1:{}", ports.prometheus)),
    ];
    moves
        .iter()
        .fold(shipped, |text, (from, to)| text.replace(from, to))
}

/// `127.0.0.1:PORT` of `http://127.0.0.1:PORT`.
fn host_port(url: &str) -> String {
    url.trim_start_matches("http://").to_owned()
}

/// The ports of the monitoring servers (free ones).
pub(crate) struct Ports {
    postgres: u16,
    redis: u16,
    node: u16,
    alertmanager: u16,
    prometheus: u16,
}

impl Ports {
    pub(crate) fn free() -> Self {
        Self {
            postgres: free_port(),
            redis: free_port(),
            node: free_port(),
            alertmanager: free_port(),
            prometheus: free_port(),
        }
    }
}

/// Prometheus with the shipped configuration and rules (see
/// [`prometheus_config`], [`rules_without_delays`]), its files in `dir`.
pub(crate) fn start_prometheus(stack: &Stack, ports: &Ports, dir: &Path) -> External {
    let rules = rules_without_delays(dir);
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, prometheus_config(stack, ports, &rules)).unwrap();
    External::spawn(
        "prometheus",
        &[
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", dir.join("tsdb").display()),
            format!("--web.listen-address=127.0.0.1:{}", ports.prometheus),
        ],
        &[],
        ports.prometheus,
        "/-/ready",
    )
}

struct Monitoring {
    prometheus: External,
    alertmanager: External,
    _exporters: Vec<External>,
}

fn start_monitoring(stack: &Stack, redis: &TestRedis, n8n: &N8nStandIn, dir: &Path) -> Monitoring {
    let ports = Ports::free();
    let listen = |port: u16| format!("--web.listen-address=127.0.0.1:{port}");
    let exporters = vec![
        External::spawn(
            "prometheus-postgres-exporter",
            &[listen(ports.postgres)],
            &[(
                "DATA_SOURCE_NAME",
                format!("{}?sslmode=disable", stack.db_url),
            )],
            ports.postgres,
            "/metrics",
        ),
        External::spawn(
            "prometheus-redis-exporter",
            &[
                listen(ports.redis),
                format!("--redis.addr=redis://127.0.0.1:{}", redis.port()),
            ],
            &[],
            ports.redis,
            "/metrics",
        ),
        External::spawn(
            "prometheus-node-exporter",
            &[listen(ports.node)],
            &[],
            ports.node,
            "/metrics",
        ),
    ];
    let am_config = dir.join("alertmanager.yml");
    std::fs::write(
        &am_config,
        format!(
            "route:\n  receiver: hook\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1s\n\
             receivers:\n  - name: hook\n    webhook_configs:\n      - url: {}\n",
            n8n.webhook_url()
        ),
    )
    .unwrap();
    let alertmanager = External::spawn(
        "prometheus-alertmanager",
        &[
            format!("--config.file={}", am_config.display()),
            format!("--storage.path={}", dir.join("am").display()),
            listen(ports.alertmanager),
            "--cluster.listen-address=".into(),
        ],
        &[],
        ports.alertmanager,
        "/-/ready",
    );
    let prometheus = start_prometheus(stack, &ports, dir);
    Monitoring {
        prometheus,
        alertmanager,
        _exporters: exporters,
    }
}

/// Makes that fraction of the simulator's generations fail.
pub(crate) async fn set_llm_error_rate(stack: &Stack, rate: f64) {
    let url = format!("{}/_sim/config", stack.llm.base_url());
    let response = stack
        .http
        .put(url)
        .json(&json!({"error_rate": rate}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    if rate == 0.0 {
        // Failed calls may have opened chat's breaker: it lets a call
        // through again after its cool-down, when chat is ready again.
        let ready = format!("{}/readyz", stack.chat.base_url());
        test_support::poll::until(
            "chat's breaker to let calls through",
            Duration::from_secs(15),
            || {
                let probe = stack.http.get(&ready).send();
                async move { probe.await.ok()?.status().is_success().then_some(()) }
            },
        )
        .await;
    }
}

/// Chats, some rejected, some failing in the LLM.
async fn drive_traffic(stack: &Stack) {
    for i in 0..12 {
        let (status, _) = stack
            .chat(json!({"user_id": format!("load-{i}"), "message": "How do I reset my password?"}))
            .await;
        assert_eq!(status, 200);
    }
    stack.chat(json!({"user_id": "bad", "message": ""})).await;
    set_llm_error_rate(stack, 1.0).await;
    for _ in 0..3 {
        let (status, _) = stack
            .chat(json!({"user_id": "unlucky", "message": "hello"}))
            .await;
        assert_eq!(status, 502);
    }
    // Three failures in a row opened the breaker: the next fails at once.
    let (status, answer) = stack
        .chat(json!({"user_id": "unlucky", "message": "hello?"}))
        .await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"]["code"], "llm_unavailable");
    set_llm_error_rate(stack, 0.0).await;
    stack
        .chat(json!({"user_id": "load-0", "message": "stream please", "stream": true}))
        .await;
}

/// `GET url`, parsed as JSON.
async fn get_json(http: &reqwest::Client, url: &str) -> Value {
    http.get(url).send().await.unwrap().json().await.unwrap()
}

async fn query(http: &reqwest::Client, prometheus: &str, expr: &str) -> Result<Vec<Value>, String> {
    let answer: Value = http
        .get(format!(
            "{prometheus}/api/v1/query?query={}",
            test_support::urlencode(expr)
        ))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    if answer["status"] != "success" {
        return Err(format!("{expr}: {answer}"));
    }
    Ok(answer["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// Waits until `expr` returns data (rules need a few evaluations).
pub(crate) async fn wait_for_data(http: &reqwest::Client, prometheus: &str, expr: &str) {
    let what = format!("{expr} to return data");
    test_support::poll::until(&what, Duration::from_secs(30), || async {
        query(http, prometheus, expr)
            .await
            .is_ok_and(|r| !r.is_empty())
            .then_some(())
    })
    .await;
}

fn dashboard_queries() -> Vec<String> {
    let output = std::process::Command::new("python3")
        .arg(repo_root().join("dashboards/check.py"))
        .arg("--print-queries")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .filter(|l| !l.is_empty())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_evaluates_every_rule_and_dashboard_and_alerts_reach_alertmanager() {
    let redis = TestRedis::start();
    let stack = Stack::start_on(&redis.url(), &[]).await;
    let n8n = N8nStandIn::start().await;
    let dir = std::env::temp_dir().join(format!("chatbot-monitoring-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let monitoring = start_monitoring(&stack, &redis, &n8n, &dir);
    let prometheus = monitoring.prometheus.base_url();
    let http = &stack.http;

    // Counters appear with their first increment, and rate() ignores a
    // series' first sample: traffic once, a few scrapes, then traffic again.
    wait_for_data(http, &prometheus, "count(up{job=\"chatbot\"} == 1) == 4").await;
    drive_traffic(&stack).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    drive_traffic(&stack).await;
    wait_for_data(http, &prometheus, "chatbot:messages:per_minute").await;
    wait_for_data(http, &prometheus, "chatbot:errors:ratio_rate5m > 0").await;
    wait_for_data(http, &prometheus, "chatbot_active_sessions").await;

    let rules = get_json(http, &format!("{prometheus}/api/v1/rules")).await;
    let mut problems = Vec::new();
    let mut count = 0;
    for rule in rules["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
    {
        count += 1;
        let (name, expr) = (
            rule["name"].as_str().unwrap(),
            rule["query"].as_str().unwrap(),
        );
        if rule["health"] != "ok" {
            problems.push(format!(
                "{name}: health {} {}",
                rule["health"], rule["lastError"]
            ));
        }
        match query(http, &prometheus, expr).await {
            Err(e) => problems.push(format!("{name}: {e}")),
            Ok(result) if result.is_empty() && rule["type"] == "recording" => {
                problems.push(format!("recording rule {name} returned no data: {expr}"));
            }
            Ok(_) => {}
        }
    }
    assert!(count > 20, "the shipped rules were loaded: {count}");
    for expr in dashboard_queries() {
        match query(http, &prometheus, &expr).await {
            Err(e) => problems.push(format!("dashboard: {e}")),
            Ok(result) if result.is_empty() => {
                problems.push(format!("dashboard query returned no data: {expr}"))
            }
            Ok(_) => {}
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );

    redis.stop();
    let alertmanager = monitoring.alertmanager.base_url();
    let critical_redis =
        |a: &&Value| a["labels"]["component"] == "redis" && a["labels"]["severity"] == "critical";
    let name = test_support::poll::until(
        "a critical redis alert to reach Alertmanager",
        Duration::from_secs(60),
        || async {
            let seen = get_json(http, &format!("{alertmanager}/api/v2/alerts")).await;
            let name = seen.as_array().unwrap().iter().find(critical_redis)?["labels"]["alertname"]
                .as_str()?
                .to_owned();
            Some(name)
        },
    )
    .await;
    let names_it = |d: &Value| {
        d["alerts"]
            .as_array()
            .is_some_and(|alerts| alerts.iter().any(|a| a["labels"]["alertname"] == name))
    };
    let what = format!("Alertmanager to deliver {name} to its receiver");
    test_support::poll::until(&what, Duration::from_secs(15), || async {
        n8n.received().iter().any(names_it).then_some(())
    })
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs a checking tool from the repository root; panics with its output
/// unless it succeeds. Returns its standard output.
fn tool(program: &str, args: &[&str]) -> String {
    let output = std::process::Command::new(program)
        .args(args)
        .current_dir(repo_root())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (run scripts/setup.sh): {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{program} {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn yaml_files(dir: &str) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(repo_root().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .map(|p| p.strip_prefix(repo_root()).unwrap().display().to_string())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no rule files in {dir}");
    files
}

#[test]
fn rules_pass_promtool_checks_and_unit_tests() {
    let rules = yaml_files("alerts");
    let mut args = vec!["check", "rules"];
    args.extend(rules.iter().map(String::as_str));
    tool("promtool", &args);
    let tests = yaml_files("alerts/tests");
    let mut args = vec!["test", "rules"];
    args.extend(tests.iter().map(String::as_str));
    tool("promtool", &args);
    tool("bash", &["alerts/check-runbooks.sh"]);
    tool(
        "promtool",
        &["check", "config", "deploy/prometheus/prometheus.yml"],
    );
}

#[test]
fn alertmanager_routes_critical_to_pagerduty_and_warnings_to_slack() {
    let config = "--config.file=deploy/alertmanager/alertmanager.yml";
    tool(
        "amtool",
        &["check-config", "deploy/alertmanager/alertmanager.yml"],
    );
    let critical = tool(
        "amtool",
        &[
            "config",
            "routes",
            "test",
            config,
            "severity=critical",
            "alertname=ServiceDown",
        ],
    );
    assert_eq!(critical.trim(), "pagerduty-emergency");
    let warning = tool(
        "amtool",
        &[
            "config",
            "routes",
            "test",
            config,
            "severity=warning",
            "alertname=HighResponseTime",
        ],
    );
    assert_eq!(warning.trim(), "slack-notifications");
    let shipped =
        std::fs::read_to_string(repo_root().join("deploy/alertmanager/alertmanager.yml")).unwrap();
    assert!(
        !shipped.contains("hooks.slack.com"),
        "no webhook URL is committed"
    );
    assert!(shipped.contains("routing_key_file:") && shipped.contains("slack_api_url_file:"));
}

#[test]
fn dashboards_are_well_formed() {
    tool("python3", &["dashboards/check.py"]);
}
