//! `chatbot-ops health`: the aggregator's verdict as a table (component,
//! status, latency, detail). Exit 0 `OK`, 1 `WARN`, 2 `ERROR`, 3 when the
//! verdict cannot be had.

use chatbot_common::config::Settings;
use chatbot_common::verdict::{ServiceEntry, Status, Verdict};

use crate::check::{Row, Status as RowStatus};
use crate::error::OpsError;
use crate::http;
use crate::output::{Outcome, Report, Table};

/// Reads the verdict of `settings.ops.health_url`.
pub async fn run(settings: &Settings) -> Result<Report, OpsError> {
    let verdict = fetch(settings).await?;
    Ok(Report {
        outcome: outcome(verdict.status),
        tables: vec![table(&verdict)],
        json: serde_json::to_value(&verdict).unwrap_or_default(),
        csv: false,
    })
}

/// `GET {ops.health_url}/health` (with `internal.token`, which the
/// aggregator wants when it listens beyond loopback): the verdict, whatever
/// the status code (an `ERROR` verdict comes with 503).
pub async fn fetch(settings: &Settings) -> Result<Verdict, OpsError> {
    const WHAT: &str = "the health verdict";
    let base = &settings.ops.health_url;
    let url = format!("{}/health", base.trim_end_matches('/'));
    let token = chatbot_common::internal::client_headers(settings.internal.token.as_ref());
    let (status, body) = http::get_json_with(WHAT, &url, token).await?;
    serde_json::from_value(body).map_err(|error| {
        http::unreachable(
            WHAT,
            &url,
            format!("answered {status} without a verdict ({error})"),
        )
    })
}

/// The exit status a verdict's status stands for.
pub fn outcome(status: Status) -> Outcome {
    match status {
        Status::Ok => Outcome::Ok,
        Status::Warn => Outcome::Warn,
        Status::Error => Outcome::Fail,
    }
}

/// One row per component of the verdict's `services` map.
pub fn table(verdict: &Verdict) -> Table {
    let mut table = Table::new(
        &format!("health: {}", verdict.status),
        &["component", "status", "latency ms", "detail"],
    );
    for (name, entry) in &verdict.services {
        let required = if entry.required { "" } else { " (optional)" };
        table.push([
            format!("{name}{required}"),
            entry.status.to_string(),
            format!("{:.1}", entry.response_time),
            entry.error.clone().unwrap_or_default(),
        ]);
    }
    table
}

/// The verdict as one row of a check list: its status, and each component
/// that is not `OK` with the reason. A verdict that cannot be had is a row
/// that fails.
pub fn verdict_row(verdict: &Result<Verdict, OpsError>) -> Row {
    const CHECK: &str = "health verdict";
    let verdict = match verdict {
        Ok(verdict) => verdict,
        Err(error) => return Row::unchecked(CHECK, error),
    };
    let problems: Vec<String> = verdict
        .problems()
        .map(|(name, entry)| describe(name, entry))
        .collect();
    Row::new(
        CHECK,
        RowStatus::of(outcome(verdict.status)),
        verdict.status.as_str(),
        problems.join("; "),
    )
}

/// One component of the verdict (`database`) as the row `check`.
pub fn component_row(check: &str, verdict: &Result<Verdict, OpsError>, component: &str) -> Row {
    let verdict = match verdict {
        Ok(verdict) => verdict,
        Err(error) => return Row::unchecked(check, error),
    };
    let Some(entry) = verdict.services.get(component) else {
        let detail = format!("the verdict has no component {component}");
        return Row::new(check, RowStatus::Fail, "missing", detail);
    };
    let detail = entry.error.as_deref().unwrap_or("");
    Row::new(
        check,
        RowStatus::of(outcome(entry.status)),
        entry.status.as_str(),
        detail,
    )
}

/// `redis: ERROR (unreachable: …)`.
fn describe(name: &str, entry: &ServiceEntry) -> String {
    match &entry.error {
        Some(error) => format!("{name}: {} ({error})", entry.status),
        None => format!("{name}: {}", entry.status),
    }
}
