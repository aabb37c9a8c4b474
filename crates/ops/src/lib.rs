//! `chatbot-ops`, the operations documentation as one tool.
//!
//! Every subcommand reads the services' own configuration
//! ([`chatbot_common::config::Settings`]), prints a table for a person or
//! JSON for a machine ([`output`]), and ends with an [`Outcome`] that is the
//! process's exit code.
//!
//! - [`health`]: the aggregator's verdict;
//! - [`report`]: the documentation's daily and weekly SQL reports;
//! - [`catalog`]: the local backups and which of them are good.

pub mod catalog;
pub mod cli;
pub mod error;
pub mod health;
pub mod output;
pub mod report;

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
        cli::Command::Report { kind, date, format } => {
            let format = if json { cli::Format::Json } else { format };
            report::run(settings, kind, date, format).await
        }
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
