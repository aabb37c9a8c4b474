//! `chatbot-ops`, the operations documentation as one tool.
//!
//! Every subcommand reads the services' own configuration
//! ([`chatbot_common::config::Settings`]), prints a table for a person or
//! JSON for a machine ([`output`]), and ends with an [`Outcome`] that is the
//! process's exit code.
//!
//! - [`health`]: the aggregator's verdict;
//! - [`report`]: the documentation's daily and weekly SQL reports;
//! - [`catalog`]: the local backups and which of them are good;
//! - [`daily_check`]: the documentation's daily checks in one run;
//! - [`checklist`]: its monitoring checklists, daily, weekly and monthly;
//! - [`check`]: their rows and exit code, from the host ([`local`]), the
//!   log files ([`logs`]) and Prometheus ([`prometheus`]).
//! - [`keys`]: the public API's keys, made, listed and revoked;
//! - [`backup`], [`restore`], [`drill`]: backups (database dump, log and
//!   configuration archives, [`manifest`]) kept locally and in S3-compatible
//!   storage ([`store`]) with [`retention`], restored and drilled ([`pg`],
//!   [`archive`]).

pub mod archive;
pub mod backup;
pub mod catalog;
pub mod check;
pub mod checklist;
pub mod cli;
pub mod daily_check;
pub mod drill;
pub mod error;
pub mod health;
pub mod http;
pub mod keys;
pub mod local;
pub mod logs;
pub mod manifest;
pub mod output;
pub mod pg;
pub mod prometheus;
pub mod report;
pub mod restore;
pub mod retention;
pub mod store;

use std::io::Write as _;
use std::process::ExitCode;

use chatbot_common::config::Settings;

pub use error::OpsError;
pub use output::Outcome;

/// Runs `cli`'s command and prints its result; the exit code says how it went.
pub async fn run(cli: cli::Cli, settings: &Settings) -> ExitCode {
    let json = cli.json;
    let result = match cli.command {
        cli::Command::Health => health::run(settings).await,
        cli::Command::Report {
            kind,
            date,
            key,
            format,
        } => {
            let format = if json { cli::Format::Json } else { format };
            report::run(settings, kind, &report::Scope { date, key }, format).await
        }
        cli::Command::DailyCheck => daily_check::run(settings).await,
        cli::Command::Checklist { period } => checklist::run(settings, period).await,
        cli::Command::Backup => backup::run(settings).await,
        cli::Command::Restore {
            from,
            target_url,
            force,
        } => restore::run(settings, &from, target_url.as_deref(), force).await,
        cli::Command::Drill => drill::run(settings).await,
        cli::Command::Keys { action } => keys::run(settings, action).await,
    };
    match result {
        Ok(report) => {
            // A closed stdout (`| head`) is not the command's failure.
            let _ = std::io::stdout().write_all(report.render(json).as_bytes());
            report.outcome.into()
        }
        Err(error) => {
            eprintln!("chatbot-ops: {error}");
            error.outcome().into()
        }
    }
}
