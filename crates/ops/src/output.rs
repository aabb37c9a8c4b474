//! What a command prints and how it ends: a [`Report`] of one or more
//! [`Table`]s, rendered as aligned text, CSV or JSON, and an [`Outcome`].

use std::fmt::Write as _;
use std::process::ExitCode;

use serde::Serialize;

/// How a command ended; the numbers are the exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Everything as it should be.
    Ok = 0,
    /// Something needs a look soon.
    Warn = 1,
    /// Something is wrong.
    Fail = 2,
    /// What was to be checked could not be reached.
    Unreachable = 3,
    /// Bad usage or configuration.
    Usage = 64,
}

impl From<Outcome> for ExitCode {
    fn from(outcome: Outcome) -> Self {
        ExitCode::from(outcome as u8)
    }
}

/// Rows under named columns.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Table {
    /// What the table shows, printed above it.
    pub title: String,
    /// Column names.
    pub columns: Vec<String>,
    /// The cells, one `Vec` per row, as many as there are columns.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with these columns.
    pub fn new(title: &str, columns: &[&str]) -> Self {
        Self {
            title: title.to_owned(),
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn push<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    /// Aligned columns under a title line.
    pub fn text(&self) -> String {
        let mut widths: Vec<usize> = self.columns.iter().map(|c| c.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect();
            padded.join("  ").trim_end().to_owned()
        };
        let mut out = String::new();
        if !self.title.is_empty() {
            let _ = writeln!(out, "{}", self.title);
        }
        let _ = writeln!(out, "{}", line(&self.columns));
        for row in &self.rows {
            let _ = writeln!(out, "{}", line(row));
        }
        out
    }

    /// RFC 4180 CSV with a header line.
    pub fn csv(&self) -> String {
        let field = |cell: &String| {
            if cell.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", cell.replace('"', "\"\""))
            } else {
                cell.clone()
            }
        };
        let mut out = String::new();
        for row in std::iter::once(&self.columns).chain(&self.rows) {
            let _ = writeln!(
                out,
                "{}",
                row.iter().map(field).collect::<Vec<_>>().join(",")
            );
        }
        out
    }
}

/// A command's result: its tables (or CSV), a JSON document, and how it ended.
#[derive(Debug, Clone)]
pub struct Report {
    /// How the command ended.
    pub outcome: Outcome,
    /// The tables a person reads.
    pub tables: Vec<Table>,
    /// What `--json` prints.
    pub json: serde_json::Value,
    /// CSV instead of tables (reports with `--format csv`).
    pub csv: bool,
}

impl Report {
    /// The text to print: JSON when `json`, otherwise the tables.
    pub fn render(&self, json: bool) -> String {
        if json {
            return format!("{:#}\n", self.json);
        }
        if self.csv {
            return self.tables.iter().map(Table::csv).collect();
        }
        let mut text: Vec<String> = self.tables.iter().map(Table::text).collect();
        text.push(format!("result: {}\n", outcome_name(self.outcome)));
        text.join("\n")
    }
}

/// The word printed for an outcome.
pub fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Ok => "OK",
        Outcome::Warn => "WARN",
        Outcome::Fail => "FAIL",
        Outcome::Unreachable => "UNREACHABLE",
        Outcome::Usage => "USAGE",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_csv_quotes() {
        let mut table = Table::new("t", &["a", "long name"]);
        table.push(["x,y", "1"]);
        assert_eq!(table.text(), "t\na    long name\nx,y  1\n");
        assert_eq!(table.csv(), "a,long name\n\"x,y\",1\n");
    }
}
