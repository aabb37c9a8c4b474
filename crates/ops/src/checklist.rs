//! `chatbot-ops checklist daily|weekly|monthly`: the operations
//! documentation's monitoring checklist. Every item a program can check is
//! checked (one row each, as in `daily-check`); the others are listed as
//! to be done by a person, with what helps, and never count as passed. The
//! exit code is the checked rows' (see [`crate::check`]).

use chatbot_common::config::Settings;
use chrono::Utc;
use serde::Serialize;
use serde_json::{Map, json};

use crate::check::{self, Row, Status};
use crate::cli::Period;
use crate::error::OpsError;
use crate::output::{Report, Table};
use crate::{health, local, logs, prometheus, report};

/// Share of `max_connections` in use over which the database item warns
/// (as the `PostgresTooManyConnections` alert), and over which it fails.
const CONNECTIONS_WARN: f64 = 0.8;
const CONNECTIONS_FAIL: f64 = 0.95;

/// An item for a person: what to do, and what helps.
#[derive(Debug, Clone, Serialize)]
pub struct Manual {
    /// The checklist's item.
    pub item: &'static str,
    /// Commands and places that help.
    pub help: &'static str,
}

const WEEKLY_MANUAL: &[Manual] = &[
    Manual {
        item: "Dashboard updated",
        help: "the Grafana dashboards (dashboards/) show the whole week for every panel; \
               `python3 dashboards/check.py` checks their queries",
    },
    Manual {
        item: "Weekly performance report reviewed",
        help: "`chatbot-ops report weekly`",
    },
];

const MONTHLY_MANUAL: &[Manual] = &[
    Manual {
        item: "Performance trends analyzed",
        help: "`chatbot-ops report weekly --date D` for each week of the month; the \
               latency and SLO dashboards over 30 days",
    },
    Manual {
        item: "Capacity planning updated",
        help: "peak messages/minute and active sessions (max_over_time of \
               chatbot:messages:per_minute and chatbot:active_sessions:max over 30d), \
               `chatbot-ops daily-check` for disk and memory, PostgreSQL size",
    },
    Manual {
        item: "Security patches applied",
        help: "`apt list --upgradable`, `cargo audit`, a rebuild with the current toolchain; \
               restart one service at a time, `chatbot-ops health` after each",
    },
    Manual {
        item: "Documentation updated",
        help: "docs/operations.md and docs/runbooks/ match the commands, ports and units in \
               use; `bash alerts/check-runbooks.sh`",
    },
    Manual {
        item: "Incident reviews completed",
        help: "a review per page this month (timeline, cause, detection time, follow-ups); \
               docs/runbooks/",
    },
];

/// Runs the checklist of `period`.
pub async fn run(settings: &Settings, period: Period) -> Result<Report, OpsError> {
    let (rows, manual) = match period {
        Period::Daily => (daily(settings).await, &[][..]),
        Period::Weekly => (weekly(settings).await, WEEKLY_MANUAL),
        Period::Monthly => (Vec::new(), MONTHLY_MANUAL),
    };
    let title = format!("{} checklist: checked", period.name());
    let mut extra = Map::new();
    extra.insert("manual".into(), json!(manual));
    let more = if manual.is_empty() {
        Vec::new()
    } else {
        vec![manual_table(manual)]
    };
    let mut report = check::report(&title, &rows, more, extra);
    if rows.is_empty() {
        report.tables.remove(0);
    }
    Ok(report)
}

/// Daily monitoring: health, error rate, latency, database connections,
/// disk, memory.
async fn daily(settings: &Settings) -> Vec<Row> {
    let verdict = health::fetch(settings).await;
    let limit = settings.ops.max_error_ratio * 100.0;
    let mut rows = vec![
        health::verdict_row(&verdict).named("Service health status"),
        prometheus::error_ratio(settings)
            .await
            .named(format!("Error rate below {limit}%")),
        prometheus::p95(settings)
            .await
            .named("Response times within SLA (p95)"),
        health::component_row(
            "Database connections healthy (verdict)",
            &verdict,
            "database",
        ),
        connections(settings)
            .await
            .named("Database connections healthy (in use)"),
    ];
    rows.extend(local::disks(settings).into_iter().map(|row| {
        let path = row.check.trim_start_matches("disk ").to_owned();
        row.named(format!("Disk space adequate: {path}"))
    }));
    rows.push(local::memory(settings).named("Memory usage normal"));
    rows
}

/// Weekly maintenance: log rotation, backup, metrics storage, alert rules.
async fn weekly(settings: &Settings) -> Vec<Row> {
    let now = Utc::now();
    vec![
        logs::rotation_row(settings, now).named("Log rotation working"),
        local::backup(settings, now).named("Backup successful"),
        prometheus::storage(settings)
            .await
            .named("Metrics storage adequate"),
        prometheus::rules(settings)
            .await
            .named("Alert rules validated"),
    ]
}

/// PostgreSQL's connections in use against `max_connections`.
async fn connections(settings: &Settings) -> Row {
    const SQL: &str = "SELECT count(*)::float8, current_setting('max_connections')::float8 \
                       FROM pg_stat_activity";
    let counted = async {
        let client = report::connect(settings).await?;
        let row = client
            .query_one(SQL, &[])
            .await
            .map_err(|e| OpsError::database(&e))?;
        Ok::<_, OpsError>((row.get::<_, f64>(0), row.get::<_, f64>(1)))
    };
    match counted.await {
        Ok((used, max)) => grade_connections(used, max),
        Err(error) => Row::unchecked("", error),
    }
}

fn grade_connections(used: f64, max: f64) -> Row {
    let share = used / max.max(1.0);
    let status = if share >= CONNECTIONS_FAIL {
        Status::Fail
    } else if share >= CONNECTIONS_WARN {
        Status::Warn
    } else {
        Status::Ok
    };
    let detail = format!(
        "warn from {}%, fail from {}% of max_connections",
        CONNECTIONS_WARN * 100.0,
        CONNECTIONS_FAIL * 100.0
    );
    Row::new("", status, format!("{used} of {max}"), detail)
}

/// The items for a person.
fn manual_table(items: &[Manual]) -> Table {
    let mut table = Table::new("to do by a person", &["item", "what helps"]);
    for item in items {
        table.push([item.item, item.help]);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_grade_against_max_connections() {
        assert_eq!(grade_connections(10.0, 100.0).status, Status::Ok);
        assert_eq!(grade_connections(80.0, 100.0).status, Status::Warn);
        assert_eq!(grade_connections(99.0, 100.0).status, Status::Fail);
        assert_eq!(grade_connections(3.0, 100.0).value, "3 of 100");
    }
}
