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
        /// Only the messages sent with the API key of this name (or prefix).
        #[arg(long)]
        key: Option<String>,
        /// Output format (`--json` is the same as `--format json`).
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// The documentation's daily checks in one run: verdict, error logs,
    /// disk, memory, services, error ratio and p95, newest backup.
    DailyCheck,
    /// The documentation's monitoring checklist: the items a program can
    /// check, checked; the others listed for a person.
    Checklist {
        /// Which checklist.
        #[arg(value_enum)]
        period: Period,
    },
    /// Backs up the database (pg_dump -Fc), the logs and the configuration
    /// to ops.backup.dir, uploads to ops.backup.s3 when a bucket is set, and
    /// deletes expired backups. Non-zero exit on any failure.
    Backup,
    /// Restores a backup's database dump, checked against its manifest
    /// before and after.
    Restore {
        /// A backup folder, or a backup id (20261201T020000Z) looked up in
        /// ops.backup.dir, then in the bucket.
        #[arg(long)]
        from: String,
        /// The database to restore into (default: database.url).
        #[arg(long, env = "CHATBOT_OPS_TARGET_URL", hide_env_values = true)]
        target_url: Option<String>,
        /// Restore even into a database that holds data, replacing the
        /// backup's tables.
        #[arg(long)]
        force: bool,
    },
    /// API keys of the public API: create (the key is shown once), list,
    /// revoke.
    Keys {
        /// What to do.
        #[command(subcommand)]
        action: KeysAction,
    },
    /// The weekly restore drill: a backup restored into a scratch database
    /// and every table compared. Exit 0 only when all are identical.
    Drill,
}

/// `chatbot-ops keys …`.
#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// Makes a key and prints it (only now).
    Create {
        /// A name for the key (unique among active keys): who or what uses it.
        #[arg(long)]
        name: String,
        /// The key may see the health verdict's details on the gateway.
        #[arg(long)]
        admin: bool,
        /// Its own limit of requests a minute (default: limits.requests_per_minute).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=60_000_000))]
        rpm: Option<u32>,
        /// Its own limit of streamed answers at once (default: limits.concurrent_streams).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        streams: Option<u32>,
    },
    /// Every key, revoked ones included (never the keys themselves).
    List,
    /// Revokes the active key with this name (or prefix, `cbk_…`).
    Revoke {
        /// The key's name or its shown prefix.
        name: String,
    },
}

/// The checklists of the operations documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Period {
    /// Daily monitoring.
    Daily,
    /// Weekly maintenance.
    Weekly,
    /// Monthly review.
    Monthly,
}

impl Period {
    /// `daily`, `weekly`, `monthly`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Daily => "daily",
            Self::Weekly => "weekly",
            Self::Monthly => "monthly",
        }
    }
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
