//! What `daily-check` and `checklist` ask Prometheus (`ops.prometheus_url`;
//! unset: these checks are skipped, saying so): the error ratio and the p95
//! response time over the last 24 hours, whether its storage holds the SLO
//! window, and whether the shipped alert rules are loaded and evaluate.

use std::path::Path;

use chatbot_common::config::Settings;
use chatbot_common::system::{self, Thresholds};
use serde_json::Value;

use crate::check::{Row, Status};
use crate::error::OpsError;
use crate::http;

/// What the errors say was asked.
const WHAT: &str = "Prometheus";

/// Why a Prometheus check is skipped.
const NOT_CONFIGURED: &str = "ops.prometheus_url is not set";

/// `chatbot:errors:ratio_rate5m` of alerts/recording.yml (a test keeps them
/// equal); asked over 24 hours.
pub const ERROR_RATIO: &str = r#"(sum(rate(chatbot_errors_total{job="chatbot"}[5m])) or vector(0)) / sum(rate(chatbot_messages_total{job="chatbot"}[5m]))"#;

/// `chatbot:response_time_seconds:p95_5m` of alerts/recording.yml; asked
/// over 24 hours.
pub const P95: &str = r#"histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{job="chatbot",service="gateway",route="/api/chat"}[5m])))"#;

/// The rule groups of alerts/*.yml (a test keeps them equal).
pub const SHIPPED_GROUPS: [&str; 6] = [
    "chatbot-service",
    "chatbot-dependencies",
    "chatbot-exporters",
    "chatbot-kpi",
    "chatbot-slo-availability",
    "chatbot-slo-latency",
];

/// The longest window of the SLO rules (alerts/slo.yml): retention must
/// keep at least this many hours.
const SLO_WINDOW_HOURS: f64 = 72.0;

/// A recording rule's expression over the last 24 hours instead of 5 minutes.
pub fn over_day(expr: &str) -> String {
    expr.replace("[5m]", "[1d]")
}

fn configured(settings: &Settings) -> Option<&str> {
    let url = settings.ops.prometheus_url.trim_end_matches('/');
    (!url.is_empty()).then_some(url)
}

/// `GET {base}{path}`'s `data`, when Prometheus says `success`.
async fn data(base: &str, path: &str, query: Option<&str>) -> Result<Value, OpsError> {
    let mut url = reqwest::Url::parse(&format!("{base}{path}"))
        .map_err(|e| OpsError::Usage(format!("ops.prometheus_url {base}: {e}")))?;
    if let Some(expr) = query {
        url.query_pairs_mut().append_pair("query", expr);
    }
    let (status, mut body) = http::get_json(WHAT, url.as_str()).await?;
    if body["status"] != "success" {
        let detail = format!("{path} answered {status}: {}", body["error"]);
        return Err(http::unreachable(WHAT, base, detail));
    }
    Ok(body["data"].take())
}

/// An instant query's first value; `None` when there is none or it is not
/// a number (no traffic: 0/0).
pub async fn query(base: &str, expr: &str) -> Result<Option<f64>, OpsError> {
    let data = data(base, "/api/v1/query", Some(expr)).await?;
    Ok(data["result"][0]["value"][1]
        .as_str()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite()))
}

/// A KPI with its upper limit.
struct Kpi {
    check: &'static str,
    expr: &'static str,
    limit: f64,
    setting: &'static str,
    show: fn(f64) -> String,
}

async fn kpi(settings: &Settings, kpi: Kpi) -> Row {
    let Some(base) = configured(settings) else {
        return Row::skipped(kpi.check, NOT_CONFIGURED);
    };
    match query(base, &over_day(kpi.expr)).await {
        Err(error) => Row::unchecked(kpi.check, error),
        Ok(None) => Row::skipped(kpi.check, "no data: no message in the last 24 h"),
        Ok(Some(value)) => Row::new(
            kpi.check,
            if value > kpi.limit {
                Status::Fail
            } else {
                Status::Ok
            },
            (kpi.show)(value),
            format!("limit {} ({})", (kpi.show)(kpi.limit), kpi.setting),
        ),
    }
}

/// Errors per message over the last 24 hours against `ops.max_error_ratio`.
pub async fn error_ratio(settings: &Settings) -> Row {
    let row = Kpi {
        check: "error ratio (24 h)",
        expr: ERROR_RATIO,
        limit: settings.ops.max_error_ratio,
        setting: "ops.max_error_ratio",
        show: |ratio| format!("{:.3}%", ratio * 100.0),
    };
    kpi(settings, row).await
}

/// The chat route's p95 at the gateway over the last 24 hours against
/// `ops.max_p95_seconds`.
pub async fn p95(settings: &Settings) -> Row {
    let row = Kpi {
        check: "p95 response time (24 h)",
        expr: P95,
        limit: settings.ops.max_p95_seconds,
        setting: "ops.max_p95_seconds",
        show: |seconds| format!("{seconds:.3} s"),
    };
    kpi(settings, row).await
}

/// Retention at least the SLO window, and, when Prometheus's storage is on
/// this host, its free space against the disk thresholds.
pub async fn storage(settings: &Settings) -> Row {
    const CHECK: &str = "metrics storage";
    let Some(base) = configured(settings) else {
        return Row::skipped(CHECK, NOT_CONFIGURED);
    };
    let answers = async {
        let runtime = data(base, "/api/v1/status/runtimeinfo", None).await?;
        let tsdb = data(base, "/api/v1/status/tsdb", None).await?;
        let flags = data(base, "/api/v1/status/flags", None).await?;
        Ok::<_, OpsError>((runtime, tsdb, flags))
    };
    let (runtime, tsdb, flags) = match answers.await {
        Ok(answers) => answers,
        Err(error) => return Row::unchecked(CHECK, error),
    };
    let retention = runtime["storageRetention"].as_str().unwrap_or("?");
    let series = tsdb["headStats"]["numSeries"].as_u64().unwrap_or(0);
    let path = flags["storage.tsdb.path"].as_str().map(Path::new);
    let free = path
        .filter(|p| p.is_absolute() && p.exists())
        .and_then(|p| system::free_percent(p).ok());
    grade_storage(
        retention,
        series,
        free,
        Thresholds::disk(&settings.aggregator),
    )
    .named(CHECK)
}

fn grade_storage(retention: &str, series: u64, free: Option<f64>, disk: Thresholds) -> Row {
    let mut value = format!("retention {retention}, {series} series");
    let mut status = Status::Ok;
    let mut detail = Vec::new();
    // `15d`, or `15d or 10GiB` with a size limit too.
    let hours = retention.split(" or ").find_map(duration_hours);
    if hours.is_none_or(|h| h < SLO_WINDOW_HOURS) {
        status = Status::Warn;
        detail.push(format!(
            "retention under the {SLO_WINDOW_HOURS} h of the SLO rules' longest window (--storage.tsdb.retention.time)"
        ));
    }
    match free {
        Some(free) => {
            value.push_str(&format!(", {free:.1}% free"));
            status = status.worse(Status::of_level(disk.level(free)));
        }
        None => detail.push("its disk is not on this host: see node_filesystem_avail_bytes".into()),
    }
    Row::new("", status, value, detail.join("; "))
}

/// A Prometheus duration (`15d`, `1w`, `1d12h`, `90m`) in hours.
fn duration_hours(text: &str) -> Option<f64> {
    let mut hours = 0.0;
    let mut rest = text.trim();
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let per_unit = match &rest[..unit_len] {
            "y" => 365.0 * 24.0,
            "w" => 7.0 * 24.0,
            "d" => 24.0,
            "h" => 1.0,
            "m" => 1.0 / 60.0,
            "s" => 1.0 / 3600.0,
            "ms" => 1.0 / 3_600_000.0,
            _ => return None,
        };
        hours += number * per_unit;
        rest = &rest[unit_len..];
    }
    Some(hours)
}

/// The shipped rule groups are loaded and every rule evaluates: asked of
/// Prometheus when configured, else `promtool check rules alerts/*.yml`
/// when both are here.
pub async fn rules(settings: &Settings) -> Row {
    const CHECK: &str = "alert rules";
    let row = match configured(settings) {
        Some(base) => match data(base, "/api/v1/rules", None).await {
            Ok(rules) => grade_rules(&rules),
            Err(error) => Row::unchecked(CHECK, error),
        },
        None => promtool(Path::new("alerts")),
    };
    row.named(CHECK)
}

fn grade_rules(data: &Value) -> Row {
    let groups = data["groups"].as_array().cloned().unwrap_or_default();
    let loaded: Vec<&str> = groups.iter().filter_map(|g| g["name"].as_str()).collect();
    let missing: Vec<&str> = SHIPPED_GROUPS
        .into_iter()
        .filter(|g| !loaded.contains(g))
        .collect();
    let rules: Vec<&Value> = groups
        .iter()
        .filter_map(|g| g["rules"].as_array())
        .flatten()
        .collect();
    let mut problems: Vec<String> = rules
        .iter()
        .filter(|r| r["health"] != "ok")
        .map(|r| format!("{}: {} {}", r["name"], r["health"], r["lastError"]))
        .collect();
    if !missing.is_empty() {
        problems.insert(0, format!("not loaded: {}", missing.join(", ")));
    }
    let value = format!("{} groups, {} rules", loaded.len(), rules.len());
    let status = if problems.is_empty() {
        Status::Ok
    } else {
        Status::Fail
    };
    Row::new("", status, value, problems.join("; "))
}

/// `promtool check rules` on `dir`'s `*.yml`.
fn promtool(dir: &Path) -> Row {
    let skipped = |why: &str| Row::skipped("", format!("{NOT_CONFIGURED}; {why}"));
    let Ok(entries) = std::fs::read_dir(dir) else {
        return skipped("no alerts/ directory here for promtool");
    };
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    files.sort();
    let output = match std::process::Command::new("promtool")
        .args(["check", "rules"])
        .args(&files)
        .output()
    {
        Ok(output) => output,
        Err(_) => return skipped("promtool is not installed"),
    };
    let value = format!("{} files", files.len());
    if output.status.success() {
        return Row::new("", Status::Ok, value, "promtool check rules alerts/*.yml");
    }
    let said = String::from_utf8_lossy(&output.stderr);
    let last = said
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    Row::new("", Status::Fail, value, format!("promtool: {last}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alerts() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../alerts")
    }

    /// The expression of the recording rule `record`, on one line.
    fn recorded(record: &str) -> String {
        let text = std::fs::read_to_string(alerts().join("recording.yml")).unwrap_or_default();
        let mut lines = text
            .lines()
            .skip_while(|l| !l.ends_with(&format!("record: {record}")));
        lines.next();
        let first = lines.next().unwrap_or_default();
        let indent = first.len() - first.trim_start().len();
        let mut expr = first
            .trim()
            .trim_start_matches("expr:")
            .trim()
            .trim_start_matches('|')
            .to_owned();
        for line in lines.take_while(|l| l.len() - l.trim_start().len() > indent) {
            expr.push(' ');
            expr.push_str(line.trim());
        }
        expr.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn the_queries_are_the_shipped_recording_rules() {
        assert_eq!(ERROR_RATIO, recorded("chatbot:errors:ratio_rate5m"));
        assert_eq!(P95, recorded("chatbot:response_time_seconds:p95_5m"));
        assert!(!over_day(P95).contains("[5m]") && over_day(P95).contains("[1d]"));
    }

    #[test]
    fn the_shipped_groups_are_those_of_alerts() {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(alerts()).into_iter().flatten().flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            found.extend(
                text.lines()
                    .filter_map(|l| l.strip_prefix("  - name: "))
                    .map(str::to_owned),
            );
        }
        found.sort();
        let mut shipped = SHIPPED_GROUPS.map(str::to_owned).to_vec();
        shipped.sort();
        assert_eq!(found, shipped);
    }

    #[test]
    fn durations_and_retention_are_graded() {
        assert_eq!(duration_hours("15d"), Some(360.0));
        assert_eq!(duration_hours("1d12h"), Some(36.0));
        assert_eq!(duration_hours("2w"), Some(336.0));
        assert_eq!(duration_hours("10GiB"), None);
        let disk = Thresholds {
            warn: 15.0,
            fail: 5.0,
        };
        assert_eq!(
            grade_storage("15d", 10, Some(50.0), disk).status,
            Status::Ok
        );
        assert_eq!(
            grade_storage("10GiB or 15d", 10, Some(50.0), disk).status,
            Status::Ok
        );
        assert_eq!(
            grade_storage("2d", 10, Some(50.0), disk).status,
            Status::Warn
        );
        assert_eq!(
            grade_storage("15d", 10, Some(1.0), disk).status,
            Status::Fail
        );
        assert_eq!(grade_storage("15d", 10, None, disk).status, Status::Ok);
    }

    #[test]
    fn rules_need_every_shipped_group_healthy() {
        let group = |name: &str, health: &str| serde_json::json!({"name": name, "rules": [{"name": "r", "health": health, "lastError": ""}]});
        let all: Vec<Value> = SHIPPED_GROUPS.iter().map(|g| group(g, "ok")).collect();
        let row = grade_rules(&serde_json::json!({ "groups": all }));
        assert_eq!(
            (row.status, row.value.as_str()),
            (Status::Ok, "6 groups, 6 rules")
        );
        let row = grade_rules(&serde_json::json!({ "groups": [group("chatbot-kpi", "err")] }));
        assert_eq!(row.status, Status::Fail);
        assert!(
            row.detail.starts_with("not loaded: chatbot-service"),
            "{}",
            row.detail
        );
        assert!(row.detail.contains("\"r\": \"err\""), "{}", row.detail);
    }
}
