//! The services' log files (`log.dir`): ERROR lines of the last 24 hours
//! counted by component, and whether rotation keeps the files to their size.
//!
//! Each service writes `<service>.log` (every line) and `<service>.error.log`
//! (ERROR lines only), ECS JSON one a line, rotated to `.1` … `.N`
//! ([`chatbot_common::logging`]). The component of a line is its
//! `service.name`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chatbot_common::config::{LogSettings, Settings};
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::check::{Row, Status};
use crate::output::Table;

/// How many of the newest ERROR lines are shown.
pub const LATEST: usize = 5;

/// The error-log row's name.
const ERRORS: &str = "error logs (24 h)";

/// The rotation row's name.
const ROTATION: &str = "log rotation";

/// The window ERROR lines are counted over.
pub fn window() -> Duration {
    Duration::hours(24)
}

/// One ERROR line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorLine {
    /// Its `@timestamp`.
    pub time: DateTime<Utc>,
    /// Its `service.name`.
    pub component: String,
    /// Its `message`, with `error.message` when there is one.
    pub message: String,
}

/// ERROR lines since a moment: how many per component, and the newest.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ErrorSummary {
    /// Lines per component.
    pub by_component: BTreeMap<String, u64>,
    /// The newest [`LATEST`] lines, newest first.
    pub latest: Vec<ErrorLine>,
}

impl ErrorSummary {
    /// Every line counted.
    pub fn total(&self) -> u64 {
        self.by_component.values().sum()
    }

    /// Counts `line` if it is an ERROR line written at `since` or later;
    /// `fallback` is its component when it names none.
    pub fn add(&mut self, line: &str, since: DateTime<Utc>, fallback: &str) {
        let Some(error) = parse(line, fallback).filter(|e| e.time >= since) else {
            return;
        };
        *self
            .by_component
            .entry(error.component.clone())
            .or_default() += 1;
        let at = self.latest.partition_point(|e| e.time >= error.time);
        if at < LATEST {
            self.latest.insert(at, error);
            self.latest.truncate(LATEST);
        }
    }

    /// `session 3, chat 1`, most first.
    pub fn components(&self) -> String {
        let mut counts: Vec<(&String, &u64)> = self.by_component.iter().collect();
        counts.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let parts: Vec<String> = counts.iter().map(|(c, n)| format!("{c} {n}")).collect();
        parts.join(", ")
    }
}

/// An ECS line at level `error`, or nothing.
fn parse(line: &str, fallback: &str) -> Option<ErrorLine> {
    let value: Value = serde_json::from_str(line).ok()?;
    if !value["log.level"].as_str()?.eq_ignore_ascii_case("error") {
        return None;
    }
    let time = DateTime::parse_from_rfc3339(value["@timestamp"].as_str()?).ok()?;
    let mut message = value["message"].as_str().unwrap_or_default().to_owned();
    if let Some(error) = value["error.message"].as_str() {
        message = format!("{message}: {error}");
    }
    Some(ErrorLine {
        time: time.with_timezone(&Utc),
        component: value["service.name"]
            .as_str()
            .unwrap_or(fallback)
            .to_owned(),
        message,
    })
}

/// The service a log file belongs to and whether it is rotated:
/// `chat.error.log.2` is (`chat`, error log, rotated 2).
fn classify(name: &str) -> Option<(&str, bool, Option<u32>)> {
    let (base, rotated) = match name.rsplit_once('.') {
        Some((base, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            (base, n.parse().ok())
        }
        _ => (name, None),
    };
    let stem = base.strip_suffix(".log")?;
    match stem.strip_suffix(".error") {
        Some(service) => Some((service, true, rotated)),
        None => Some((stem, false, rotated)),
    }
}

/// ERROR lines written since `since` in `dir`'s error logs, rotated ones
/// included (a file last modified before `since` is not read).
pub fn summarize(dir: &Path, since: DateTime<Utc>) -> std::io::Result<ErrorSummary> {
    let mut summary = ErrorSummary::default();
    for file in files(dir)? {
        let Some((service, true, _)) = classify(&file.name) else {
            continue;
        };
        if file.modified < since {
            continue;
        }
        let text = std::fs::read(&file.path)?;
        for line in String::from_utf8_lossy(&text).lines() {
            summary.add(line, since, service);
        }
    }
    Ok(summary)
}

/// The error-log row of the daily check, and what it counted. No `log.dir`:
/// skipped (the logs are only on stdout, in the journal or the cluster's
/// log collector).
pub fn errors_row(settings: &Settings, now: DateTime<Utc>) -> (Row, Option<ErrorSummary>) {
    let Some(dir) = &settings.log.dir else {
        return (
            Row::skipped(ERRORS, "log.dir is not set: no log files"),
            None,
        );
    };
    match summarize(dir, now - window()) {
        Ok(summary) if summary.total() == 0 => {
            let detail = format!("no ERROR line in {}/*.error.log*", dir.display());
            (Row::new(ERRORS, Status::Ok, "0", detail), Some(summary))
        }
        Ok(summary) => {
            let row = Row::new(
                ERRORS,
                Status::Warn,
                summary.total().to_string(),
                summary.components(),
            );
            (row, Some(summary))
        }
        Err(error) => (
            Row::unchecked(ERRORS, format!("{}: {error}", dir.display())),
            None,
        ),
    }
}

/// The newest ERROR lines as a table.
pub fn latest_table(summary: &ErrorSummary) -> Table {
    let mut table = Table::new("latest errors", &["time", "component", "message"]);
    for line in &summary.latest {
        table.push([
            line.time.format("%Y-%m-%d %H:%M:%S").to_string(),
            line.component.clone(),
            line.message.clone(),
        ]);
    }
    table
}

/// A file in the log directory.
#[derive(Debug, Clone)]
pub struct LogFile {
    /// Its path.
    pub path: PathBuf,
    /// Its name.
    pub name: String,
    /// Its size in bytes.
    pub len: u64,
    /// When it was last written.
    pub modified: DateTime<Utc>,
}

/// The files in `dir`.
pub fn files(dir: &Path) -> std::io::Result<Vec<LogFile>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_file() {
            files.push(LogFile {
                path: entry.path(),
                name: entry.file_name().to_string_lossy().into_owned(),
                len: meta.len(),
                modified: meta.modified()?.into(),
            });
        }
    }
    Ok(files)
}

/// Whether rotation works: no log well past `log.max_file_bytes` (a file is
/// rotated at the first write after it passed its size, so a live file may
/// be over by one batch of lines: [`ROTATION_SLACK`]), no rotated file
/// numbered past `log.max_files`, and some log written in the last 24 hours.
pub fn rotation_row(settings: &Settings, now: DateTime<Utc>) -> Row {
    let Some(dir) = &settings.log.dir else {
        return Row::skipped(ROTATION, "log.dir is not set: no log files");
    };
    match files(dir) {
        Ok(files) => grade_rotation(&files, &settings.log, now),
        Err(error) => Row::unchecked(ROTATION, format!("{}: {error}", dir.display())),
    }
}

/// How far past `log.max_file_bytes` a live log may be before rotation
/// counts as broken (or a tenth of the size, when that is more).
const ROTATION_SLACK: u64 = 64 * 1024;

fn grade_rotation(files: &[LogFile], log: &LogSettings, now: DateTime<Utc>) -> Row {
    let logs: Vec<(&LogFile, Option<u32>)> = files
        .iter()
        .filter_map(|f| classify(&f.name).map(|(_, _, n)| (f, n)))
        .collect();
    let current: Vec<&LogFile> = logs
        .iter()
        .filter(|(_, n)| n.is_none())
        .map(|(f, _)| *f)
        .collect();
    let rotated = logs.len() - current.len();
    let Some(largest) = current.iter().max_by_key(|f| f.len) else {
        return Row::new(
            ROTATION,
            Status::Warn,
            "no logs",
            "no <service>.log file in log.dir",
        );
    };
    let value = format!("{} logs, {rotated} rotated", current.len());
    let mb = |bytes: u64| format!("{:.1} MB", bytes as f64 / 1e6);
    let mut problems: Vec<String> = current
        .iter()
        .filter(|f| f.len > log.max_file_bytes + ROTATION_SLACK.max(log.max_file_bytes / 10))
        .map(|f| {
            format!(
                "{} is {}, over log.max_file_bytes ({})",
                f.name,
                mb(f.len),
                mb(log.max_file_bytes)
            )
        })
        .collect();
    problems.extend(
        logs.iter()
            .filter(|(_, n)| n.is_some_and(|n| n as usize > log.max_files))
            .map(|(f, _)| format!("{} is past log.max_files ({})", f.name, log.max_files)),
    );
    if !problems.is_empty() {
        return Row::new(ROTATION, Status::Fail, value, problems.join("; "));
    }
    let newest = current.iter().map(|f| f.modified).max().unwrap_or(now);
    if newest < now - window() {
        let detail = format!("no log written since {}", newest.format("%Y-%m-%d %H:%M"));
        return Row::new(ROTATION, Status::Warn, value, detail);
    }
    let detail = format!(
        "largest {} ({}) of {}",
        largest.name,
        mb(largest.len),
        mb(log.max_file_bytes)
    );
    Row::new(ROTATION, Status::Ok, value, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(at: DateTime<Utc>, level: &str, service: &str, message: &str) -> String {
        serde_json::json!({
            "@timestamp": at.to_rfc3339(), "log.level": level, "service.name": service,
            "message": message, "error.message": "redis down",
        })
        .to_string()
    }

    #[test]
    fn error_lines_count_per_component_within_the_window() {
        let now = Utc::now();
        let since = now - window();
        let mut summary = ErrorSummary::default();
        for (hours_ago, level, service) in [
            (1, "error", "session"),
            (2, "error", "session"),
            (23, "error", "chat"),
            (25, "error", "chat"), // before the window
            (1, "warn", "chat"),   // not an error
        ] {
            let at = now - Duration::hours(hours_ago);
            summary.add(
                &line(at, level, service, &format!("{hours_ago}h")),
                since,
                "x",
            );
        }
        summary.add("not json", since, "x");
        summary.add(
            r#"{"log.level":"error","@timestamp":"2999-01-01T00:00:00Z","message":"m"}"#,
            since,
            "gateway",
        );
        assert_eq!(summary.total(), 4);
        assert_eq!(summary.components(), "session 2, chat 1, gateway 1");
        let order: Vec<&str> = summary.latest.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(
            order,
            ["m", "1h: redis down", "2h: redis down", "23h: redis down"]
        );
    }

    #[test]
    fn only_the_newest_lines_are_kept() {
        let now = Utc::now();
        let mut summary = ErrorSummary::default();
        for minutes in 0..20 {
            let at = now - Duration::minutes(minutes);
            summary.add(
                &line(at, "ERROR", "chat", &minutes.to_string()),
                now - window(),
                "x",
            );
        }
        assert_eq!(summary.total(), 20);
        assert_eq!(summary.latest.len(), LATEST);
        assert!(summary.latest[0].message.starts_with("0:"));
    }

    #[test]
    fn log_file_names_are_classified() {
        assert_eq!(classify("chat.error.log"), Some(("chat", true, None)));
        assert_eq!(classify("chat.error.log.3"), Some(("chat", true, Some(3))));
        assert_eq!(
            classify("health-aggregator.log.1"),
            Some(("health-aggregator", false, Some(1)))
        );
        assert_eq!(classify("notes.txt"), None);
    }

    #[test]
    fn rotation_is_graded_by_size_count_and_freshness() {
        let now = Utc::now();
        let log = LogSettings {
            max_file_bytes: 1000,
            max_files: 2,
            ..chatbot_common::config::Settings::default().log
        };
        let file = |name: &str, len, hours_ago| LogFile {
            path: PathBuf::from(name),
            name: name.to_owned(),
            len,
            modified: now - Duration::hours(hours_ago),
        };
        let good = [
            file("chat.log", 900, 0),
            file("chat.log.1", 990, 1),
            file("chat.log.2", 990, 2),
        ];
        let row = grade_rotation(&good, &log, now);
        assert_eq!(
            (row.status, row.value.as_str()),
            (Status::Ok, "1 logs, 2 rotated")
        );
        let just_over = [file("chat.log", 1200, 0)];
        let row = grade_rotation(&just_over, &log, now);
        assert_eq!(row.status, Status::Ok, "rotated at the next write");
        let big = [file("chat.log", 70_000, 0)];
        assert_eq!(grade_rotation(&big, &log, now).status, Status::Fail);
        let many = [file("chat.log", 5, 0), file("chat.log.3", 5, 0)];
        assert!(
            grade_rotation(&many, &log, now)
                .detail
                .contains("chat.log.3")
        );
        let stale = [file("chat.log", 5, 30)];
        assert_eq!(grade_rotation(&stale, &log, now).status, Status::Warn);
        assert_eq!(grade_rotation(&[], &log, now).status, Status::Warn);
    }
}
