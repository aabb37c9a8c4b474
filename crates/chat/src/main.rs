//! The chat service binary.
//!
//! `chat` serves; `chat migrate` applies pending database migrations and exits.

use std::process::ExitCode;

use chatbot_common::error::ErrorChain;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let settings = chatbot_common::server::start_process("chat");
    let result = match std::env::args().nth(1).as_deref() {
        None => serve(&settings).await,
        Some("migrate") => migrate(&settings).await,
        Some(other) => Err(format!("unknown command '{other}'; usage: chat [migrate]")),
    };
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!(error = %message, "chat stopped");
            ExitCode::FAILURE
        }
    };
    // Log lines are written in the background: write what is left.
    chatbot_common::telemetry::flush();
    code
}

async fn serve(settings: &chatbot_common::config::Settings) -> Result<(), String> {
    let service = chat::build(settings).await.map_err(|e| e.to_string())?;
    service.run_until_stopped().await.map_err(|e| e.to_string())
}

async fn migrate(settings: &chatbot_common::config::Settings) -> Result<(), String> {
    let pool = chat::db::pool(&settings.database).map_err(|e| ErrorChain(&e).to_string())?;
    let applied = chat::db::migrate(&pool)
        .await
        .map_err(|e| ErrorChain(&e).to_string())?;
    tracing::info!(?applied, "migrations applied");
    Ok(())
}
