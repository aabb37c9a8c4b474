//! `chatbot-ops daily-check`: the operations documentation's daily checks
//! in one run, one row each (check, status, value, detail):
//!
//! - the aggregator's verdict (`ops.health_url`);
//! - ERROR lines of the last 24 hours in `log.dir`'s `*.error.log*`, by
//!   component, with the newest few in a second table;
//! - free disk on `aggregator.disk_paths`, `log.dir` and `ops.backup.dir`,
//!   and available memory, against the aggregator's thresholds;
//! - each service's state (systemd unit, or `/livez`);
//! - the error ratio and p95 response time of the last 24 hours from
//!   Prometheus (skipped when `ops.prometheus_url` is not set);
//! - the age of the newest good backup.
//!
//! The exit code is the worst row's (see [`crate::check`]).

use chatbot_common::config::Settings;
use chrono::Utc;
use serde_json::{Map, json};

use crate::check::{self, Row};
use crate::error::OpsError;
use crate::output::Report;
use crate::{health, local, logs, prometheus};

/// Runs every check.
pub async fn run(settings: &Settings) -> Result<Report, OpsError> {
    let now = Utc::now();
    let verdict = health::fetch(settings).await;
    let (errors, summary) = logs::errors_row(settings, now);
    let mut rows: Vec<Row> = vec![health::verdict_row(&verdict), errors];
    rows.extend(local::disks(settings));
    rows.push(local::memory(settings));
    rows.extend(local::services(settings).await);
    rows.push(prometheus::error_ratio(settings).await);
    rows.push(prometheus::p95(settings).await);
    rows.push(local::backup(settings, now));
    let mut more = Vec::new();
    let mut extra = Map::new();
    if let Some(summary) = summary {
        if !summary.latest.is_empty() {
            more.push(logs::latest_table(&summary));
        }
        extra.insert("errors".into(), json!(summary));
    }
    Ok(check::report("daily check", &rows, more, extra))
}
