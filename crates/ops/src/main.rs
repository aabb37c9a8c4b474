//! `chatbot-ops`: runs one operations command and exits with its status
//! (see [`chatbot_ops::Outcome`]), so cron, systemd timers and Kubernetes
//! CronJobs can alert on it.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = match chatbot_ops::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // --help and --version print to stdout and succeed.
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(64)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let settings = match chatbot_common::config::Settings::load() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("chatbot-ops: {error}");
            return ExitCode::from(64);
        }
    };
    chatbot_ops::run(cli, &settings).await
}
