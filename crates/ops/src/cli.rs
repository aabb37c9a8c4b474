//! The command line: one subcommand per procedure of the operations
//! documentation.

use clap::{Parser, Subcommand, ValueEnum};

/// The operations documentation as one tool. Exit codes: 0 all good, 1 a
/// warning, 2 a failure, 3 something could not be reached, 64 bad usage or
/// configuration.
#[derive(Debug, Parser)]
#[command(name = "chatbot-ops", version, about)]
pub struct Cli {
    /// Machine-readable JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The aggregator's verdict: component, status, latency, detail.
    Health,
    /// The documentation's two SQL reports, run against PostgreSQL.
    Report {
        /// Which report.
        #[arg(value_enum)]
        kind: ReportKind,
        /// The day the report is for (default: today).
        #[arg(long)]
        date: Option<chrono::NaiveDate>,
        /// Output format (`--json` is the same as `--format json`).
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

/// The reports of the operations documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportKind {
    /// Messages, active users, average response time, urgent messages per day.
    Daily,
    /// Messages, p95 response time, errors, active users per week.
    Weekly,
}

/// How a result is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for a person.
    Table,
    /// Comma-separated values with a header line.
    Csv,
    /// JSON.
    Json,
}
