//! `chatbot-ops health`: the aggregator's verdict as a table (component,
//! status, latency, detail). Exit 0 `OK`, 1 `WARN`, 2 `ERROR`, 3 when the
//! verdict cannot be had.

use std::time::Duration;

use chatbot_common::config::Settings;
use serde_json::Value;

use crate::error::OpsError;
use crate::output::{Outcome, Report, Table};

/// How long the verdict may take (it is cached by the aggregator).
const TIMEOUT: Duration = Duration::from_secs(5);

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
    let url = format!("{}/health", base.trim_end_matches('/'));
    let unreachable = |detail: String| OpsError::Unreachable {
        what: "the health verdict",
        url: url.clone(),
        detail,
    };
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .no_proxy()
        .build()
        .map_err(|e| unreachable(e.to_string()))?;
    let response = client
        .get(&url)
        .send()
        .await
        .map_err(|e| unreachable(chatbot_common::error::ErrorChain(&e).to_string()))?;
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .map_err(|_| unreachable(format!("answered {status} without a verdict")))?;
    if body["status"].as_str().is_none() {
        return Err(unreachable(format!("answered {status} without a verdict")));
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
