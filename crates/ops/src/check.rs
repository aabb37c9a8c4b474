//! The rows of `daily-check` and `checklist`: one check each, with its
//! status, the value it measured and a detail; the command's exit code is
//! the worst row's.
//!
//! | status | printed | exit code |
//! |---|---|---|
//! | [`Status::Ok`] | `OK` | 0 |
//! | [`Status::Warn`] | `WARN` | 1 |
//! | [`Status::Fail`] | `FAIL` | 2 |
//! | [`Status::Unchecked`]: what was to be looked at could not be reached | `FAIL` | 2, or 3 when no row could be checked at all |
//! | [`Status::Skipped`]: not configured, or nothing to measure | `SKIP` | none |

use std::fmt::Display;

use chatbot_common::system::Level;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::output::{Outcome, Report, Table};

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// As it should be.
    Ok,
    /// Needs a look soon.
    Warn,
    /// Wrong.
    Fail,
    /// Could not be looked at (a server did not answer): a failure.
    #[serde(rename = "fail")]
    Unchecked,
    /// Not configured, or nothing to measure: no effect on the exit code.
    #[serde(rename = "skipped")]
    Skipped,
}

impl Status {
    /// The status an outcome stands for (`Unreachable` and worse: `Fail`).
    pub fn of(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Ok => Self::Ok,
            Outcome::Warn => Self::Warn,
            _ => Self::Fail,
        }
    }

    /// The status of a reading graded against thresholds.
    pub fn of_level(level: Level) -> Self {
        match level {
            Level::Pass => Self::Ok,
            Level::Warn => Self::Warn,
            Level::Fail => Self::Fail,
        }
    }

    /// The worse of two statuses of readings (`Ok` < `Warn` < `Fail`).
    #[must_use]
    pub fn worse(self, other: Self) -> Self {
        let rank = |s: Self| match s {
            Self::Skipped => 0,
            Self::Ok => 1,
            Self::Warn => 2,
            Self::Fail | Self::Unchecked => 3,
        };
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }

    /// The word printed in the table.
    pub fn word(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::Warn => "WARN",
            Self::Fail | Self::Unchecked => "FAIL",
            Self::Skipped => "SKIP",
        }
    }
}

/// One check: what was checked, how it came out, what was measured, why.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// What was checked (`disk /var/log/chatbot`).
    pub check: String,
    /// How it came out.
    pub status: Status,
    /// What was measured (`42.0% free`).
    pub value: String,
    /// Why it warned or failed, the threshold, or a note.
    pub detail: String,
}

impl Row {
    /// A row.
    pub fn new(
        check: impl Into<String>,
        status: Status,
        value: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            check: check.into(),
            status,
            value: value.into(),
            detail: detail.into(),
        }
    }

    /// A check that could not be made, and why.
    pub fn unchecked(check: impl Into<String>, why: impl Display) -> Self {
        Self::new(check, Status::Unchecked, "", why.to_string())
    }

    /// A check left out, and why.
    pub fn skipped(check: impl Into<String>, why: impl Into<String>) -> Self {
        Self::new(check, Status::Skipped, "", why)
    }

    /// The same row under another name (a checklist's wording).
    #[must_use]
    pub fn named(self, check: impl Into<String>) -> Self {
        Self {
            check: check.into(),
            ..self
        }
    }
}

/// The exit code of a list of rows: the worst row's; 3 when rows could not
/// be checked and none could.
pub fn outcome(rows: &[Row]) -> Outcome {
    let checked = rows.iter().filter_map(|row| match row.status {
        Status::Ok => Some(Outcome::Ok),
        Status::Warn => Some(Outcome::Warn),
        Status::Fail => Some(Outcome::Fail),
        Status::Unchecked | Status::Skipped => None,
    });
    let unchecked = rows.iter().any(|row| row.status == Status::Unchecked);
    match checked.max() {
        None if unchecked => Outcome::Unreachable,
        worst if unchecked => Outcome::Fail.max(worst.unwrap_or(Outcome::Ok)),
        worst => worst.unwrap_or(Outcome::Ok),
    }
}

/// The rows as a table: check, status, value, detail.
pub fn table(title: &str, rows: &[Row]) -> Table {
    let mut table = Table::new(title, &["check", "status", "value", "detail"]);
    for row in rows {
        table.push([
            row.check.clone(),
            row.status.word().to_owned(),
            row.value.clone(),
            row.detail.clone(),
        ]);
    }
    table
}

/// A command's result from its rows, with `more` tables after theirs and
/// `extra` keys in its JSON (`{"outcome": …, "checks": [...], …}`).
pub fn report(title: &str, rows: &[Row], more: Vec<Table>, extra: Map<String, Value>) -> Report {
    let outcome = outcome(rows);
    let mut document = Map::new();
    document.insert("outcome".into(), json!(outcome));
    document.insert("checks".into(), json!(rows));
    document.extend(extra);
    let mut tables = vec![table(title, rows)];
    tables.extend(more);
    Report {
        outcome,
        tables,
        json: Value::Object(document),
        csv: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(statuses: &[Status]) -> Vec<Row> {
        statuses
            .iter()
            .map(|status| Row::new("c", *status, "", ""))
            .collect()
    }

    #[test]
    fn the_worst_row_decides_and_unchecked_rows_fail() {
        use Status::*;
        assert_eq!(outcome(&rows(&[])), Outcome::Ok);
        assert_eq!(outcome(&rows(&[Ok, Skipped])), Outcome::Ok);
        assert_eq!(outcome(&rows(&[Ok, Warn, Skipped])), Outcome::Warn);
        assert_eq!(outcome(&rows(&[Warn, Fail, Ok])), Outcome::Fail);
        assert_eq!(outcome(&rows(&[Ok, Unchecked])), Outcome::Fail);
        assert_eq!(outcome(&rows(&[Unchecked, Skipped])), Outcome::Unreachable);
        assert_eq!(outcome(&rows(&[Skipped])), Outcome::Ok);
    }

    #[test]
    fn unchecked_rows_print_and_serialise_as_failures() {
        let row = Row::unchecked("health verdict", "down");
        assert_eq!(row.status.word(), "FAIL");
        assert_eq!(json!(row)["status"], "fail");
        assert_eq!(json!(Row::skipped("x", "why"))["status"], "skipped");
        let report = report("t", &[row], Vec::new(), Map::new());
        assert_eq!(report.json["outcome"], "unreachable");
        assert_eq!(report.tables[0].rows[0][3], "down");
    }
}
