//! `chatbot-ops health`: the aggregator's verdict as a table (component,
//! status, latency, detail). Exit 0 `OK`, 1 `WARN`, 2 `ERROR`, 3 when the
//! verdict cannot be had.

use chatbot_common::config::Settings;
use serde_json::Value;

use crate::check::{Row, Status};
use crate::error::OpsError;
use crate::http;
use crate::output::{Outcome, Report, Table};

/// Reads the verdict of `settings.ops.health_url`.
pub async fn run(settings: &Settings) -> Result<Report, OpsError> {
    let verdict = fetch(&settings.ops.health_url).await?;
    let outcome = outcome(&verdict);
    Ok(Report {
        outcome,
        tables: vec![table(&verdict)],
        json: verdict,
        csv: false,
    })
}

/// `GET {base}/health`: the verdict JSON, whatever the status code (an
/// `ERROR` verdict comes with 503).
pub async fn fetch(base: &str) -> Result<Value, OpsError> {
    const WHAT: &str = "the health verdict";
    let url = format!("{}/health", base.trim_end_matches('/'));
    let (status, body) = http::get_json(WHAT, &url).await?;
    if body["status"].as_str().is_none() {
        return Err(http::unreachable(
            WHAT,
            &url,
            format!("answered {status} without a verdict"),
        ));
    }
    Ok(body)
}

/// The exit status a verdict stands for.
pub fn outcome(verdict: &Value) -> Outcome {
    match verdict["status"].as_str() {
        Some("OK") => Outcome::Ok,
        Some("WARN") => Outcome::Warn,
        _ => Outcome::Fail,
    }
}

/// One row per component of the verdict's `services` map.
pub fn table(verdict: &Value) -> Table {
    let status = verdict["status"].as_str().unwrap_or("?");
    let mut table = Table::new(
        &format!("health: {status}"),
        &["component", "status", "latency ms", "detail"],
    );
    if let Some(services) = verdict["services"].as_object() {
        for (name, entry) in services {
            let required = if entry["required"].as_bool() == Some(false) {
                " (optional)"
            } else {
                ""
            };
            table.push([
                format!("{name}{required}"),
                entry["status"].as_str().unwrap_or("?").to_owned(),
                entry["responseTime"]
                    .as_f64()
                    .map(|ms| format!("{ms:.1}"))
                    .unwrap_or_default(),
                entry["error"].as_str().unwrap_or("").to_owned(),
            ]);
        }
    }
    table
}

/// The verdict as one row of a check list: its status, and each component
/// that is not `OK` with the reason. A verdict that cannot be had is a row
/// that fails.
pub fn verdict_row(verdict: &Result<Value, OpsError>) -> Row {
    const CHECK: &str = "health verdict";
    let verdict = match verdict {
        Ok(verdict) => verdict,
        Err(error) => return Row::unchecked(CHECK, error),
    };
    let problems: Vec<String> = verdict["services"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, entry)| entry["status"] != "OK")
        .map(|(name, entry)| describe(name, entry))
        .collect();
    Row::new(
        CHECK,
        Status::of(outcome(verdict)),
        verdict["status"].as_str().unwrap_or("?"),
        problems.join("; "),
    )
}

/// One component of the verdict (`database`) as the row `check`.
pub fn component_row(check: &str, verdict: &Result<Value, OpsError>, component: &str) -> Row {
    let verdict = match verdict {
        Ok(verdict) => verdict,
        Err(error) => return Row::unchecked(check, error),
    };
    let entry = &verdict["services"][component];
    let Some(status) = entry["status"].as_str() else {
        let detail = format!("the verdict has no component {component}");
        return Row::new(check, Status::Fail, "missing", detail);
    };
    let level = outcome(&serde_json::json!({ "status": status }));
    let detail = entry["error"].as_str().unwrap_or("");
    Row::new(check, Status::of(level), status, detail)
}

/// `redis: ERROR (unreachable: …)`.
fn describe(name: &str, entry: &Value) -> String {
    let status = entry["status"].as_str().unwrap_or("?");
    match entry["error"].as_str() {
        Some(error) => format!("{name}: {status} ({error})"),
        None => format!("{name}: {status}"),
    }
}
