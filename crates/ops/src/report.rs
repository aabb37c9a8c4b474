//! `chatbot-ops report daily|weekly`: the operations documentation's two
//! SQL reports, run as written; `--date D` runs them as if today were `D`,
//! `--key NAME` over the messages sent with the API keys of that name (or
//! prefix) only.

use chatbot_common::config::Settings;
use chatbot_common::error::ErrorChain;
use serde_json::Value;

use crate::cli::{Format, ReportKind};
use crate::error::OpsError;
use crate::output::{Outcome, Report, Table};

/// The daily activity report, verbatim from the operations documentation.
pub const DAILY: &str = "SELECT
  DATE(timestamp) as date,
  COUNT(*) as total_messages,
  COUNT(DISTINCT user_id) as active_users,
  AVG(response_time) as avg_response_time,
  SUM(CASE WHEN urgency = 'HIGH' THEN 1 ELSE 0 END) as urgent_messages
FROM messages
WHERE timestamp >= CURRENT_DATE - INTERVAL '1 day'
GROUP BY DATE(timestamp)";

/// The weekly performance summary, verbatim from the operations documentation.
pub const WEEKLY: &str = "SELECT
  DATE_TRUNC('week', timestamp) as week,
  COUNT(*) as total_messages,
  PERCENTILE_CONT(0.95) WITHIN GROUP (ORDER BY response_time) as p95_response_time,
  SUM(CASE WHEN error IS NOT NULL THEN 1 ELSE 0 END) as errors,
  COUNT(DISTINCT user_id) as weekly_active_users
FROM messages
WHERE timestamp >= CURRENT_DATE - INTERVAL '7 days'
GROUP BY DATE_TRUNC('week', timestamp)";

impl ReportKind {
    fn query(self) -> &'static str {
        match self {
            Self::Daily => DAILY,
            Self::Weekly => WEEKLY,
        }
    }

    /// The query's columns, in its order.
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            Self::Daily => &[
                "date",
                "total_messages",
                "active_users",
                "avg_response_time",
                "urgent_messages",
            ],
            Self::Weekly => &[
                "week",
                "total_messages",
                "p95_response_time",
                "errors",
                "weekly_active_users",
            ],
        }
    }

    fn title(self) -> &'static str {
        match self {
            Self::Daily => "daily activity report",
            Self::Weekly => "weekly performance report",
        }
    }
}

/// Which messages a report covers: its day, and optionally one API key.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// The day the report is for (default: today).
    pub date: Option<chrono::NaiveDate>,
    /// Only messages sent with the keys of this name or prefix.
    pub key: Option<String>,
}

/// Messages sent with the API keys named (or prefixed) `$2`.
const BY_KEY: &str = "(SELECT * FROM messages WHERE api_key_id IN \
     (SELECT id FROM api_keys WHERE name = $2 OR prefix = $2)) messages";

/// Runs the report `kind` over `scope` against `settings.database`.
pub async fn run(
    settings: &Settings,
    kind: ReportKind,
    scope: &Scope,
    format: Format,
) -> Result<Report, OpsError> {
    let rows = query(settings, kind, scope).await?;
    let mut table = Table::new(kind.title(), kind.columns());
    for row in &rows {
        table.push(kind.columns().iter().map(|c| cell(&row[*c])));
    }
    Ok(Report {
        outcome: Outcome::Ok,
        tables: vec![table],
        json: Value::Array(rows),
        csv: format == Format::Csv,
    })
}

/// The report's rows as JSON objects (numbers stay numbers), oldest first.
pub async fn query(
    settings: &Settings,
    kind: ReportKind,
    scope: &Scope,
) -> Result<Vec<Value>, OpsError> {
    let client = connect(settings).await?;
    let mut report = kind.query().replace("CURRENT_DATE", "$1::date");
    if scope.key.is_some() {
        report = report.replace("FROM messages", &format!("FROM {BY_KEY}"));
    }
    let sql = format!(
        "SELECT to_json(r) FROM ({report}) r ORDER BY r.{}",
        kind.columns()[0]
    );
    let today = scope
        .date
        .unwrap_or_else(|| chrono::Local::now().date_naive());
    let rows = match &scope.key {
        Some(key) => client.query(&sql, &[&today, key]).await,
        None => client.query(&sql, &[&today]).await,
    }
    .map_err(|e| OpsError::database(&e))?;
    Ok(rows.iter().map(|row| row.get::<_, Value>(0)).collect())
}

/// One PostgreSQL connection with the services' settings.
pub async fn connect(settings: &Settings) -> Result<deadpool_postgres::Object, OpsError> {
    pool(settings)?
        .get()
        .await
        .map_err(|e| OpsError::database(&e))
}

/// A PostgreSQL pool with the services' settings (a bad `database.url` is a
/// usage error).
pub fn pool(settings: &Settings) -> Result<deadpool_postgres::Pool, OpsError> {
    chatbot_common::pools::postgres(&settings.database)
        .map_err(|e| OpsError::Usage(ErrorChain(&e).to_string()))
}

fn cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.1}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}
