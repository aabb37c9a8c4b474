//! The chat service binary.
//!
//! `chat` serves; `chat migrate` applies pending database migrations and exits.

use std::process::ExitCode;

use chat::StartError;
use chatbot_common::config::Settings;

/// Why `chat` stopped with a failure.
#[derive(Debug, thiserror::Error)]
enum Failure {
    /// An argument it does not know.
    #[error("unknown command '{0}'; usage: chat [migrate]")]
    Usage(String),
    /// Start-up, serving or migrating failed.
    #[error(transparent)]
    Start(#[from] StartError),
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let settings = chatbot_common::server::start_process("chat");
    let result = match std::env::args().nth(1).as_deref() {
        None => serve(&settings).await,
        Some("migrate") => migrate(&settings).await,
        Some(other) => Err(Failure::Usage(other.to_owned())),
    };
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            tracing::error!(error = %failure, "chat stopped");
            ExitCode::FAILURE
        }
    };
    // Log lines are written in the background: write what is left.
    chatbot_common::telemetry::flush();
    code
}

async fn serve(settings: &Settings) -> Result<(), Failure> {
    let service = chat::build(settings).await?;
    Ok(service.run_until_stopped().await.map_err(StartError::Io)?)
}

async fn migrate(settings: &Settings) -> Result<(), Failure> {
    let pool = chat::db::pool(&settings.database).map_err(StartError::Database)?;
    let applied = chat::db::migrate(&pool)
        .await
        .map_err(StartError::Database)?;
    tracing::info!(?applied, "migrations applied");
    Ok(())
}
