//! The chat service: one exchange at a time.
//!
//! The path of a message: [`routes`] reads the request, [`exchange`] validates
//! it, fetches history from the session service ([`sessions`]), classifies it
//! ([`classify`]), calls the LLM through the Ollama API ([`llm`]), stores the
//! exchange in PostgreSQL ([`db`]), appends the turns to the session and, for
//! `HIGH` urgency, posts to n8n ([`escalation`]). Start with [`build`].

pub mod classify;
pub mod db;
pub mod escalation;
pub mod exchange;
pub mod llm;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod sessions;

use std::sync::Arc;
use std::time::Duration;

use chatbot_common::config::Settings;
use chatbot_common::error::ErrorChain;
use chatbot_common::health::check_fn;
use chatbot_common::server::{MainRuntime, RunningService, ServiceBuilder};
use chatbot_common::telemetry;
use chatbot_common::upstream::{Upstream, http_client};
use tokio_util::task::TaskTracker;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The classification rules are invalid.
    #[error(transparent)]
    Rules(#[from] classify::UnknownType),
    /// The database could not be set up.
    #[error("database: {}", ErrorChain(.0))]
    Database(#[from] db::DbError),
    /// The listener could not be bound.
    #[error("could not listen: {0}")]
    Io(#[from] std::io::Error),
}

/// How long start-up keeps trying to reach PostgreSQL for migrations.
const MIGRATION_PATIENCE: Duration = Duration::from_secs(30);

/// Builds the service: pool, migrations (when `database.migrate_on_start`),
/// clients, and the bound server.
pub async fn build(settings: &Settings) -> Result<RunningService, StartError> {
    let pool = db::pool(&settings.database)?;
    if settings.database.migrate_on_start {
        migrate_with_patience(&pool).await?;
    }
    let tasks = TaskTracker::new();
    let runtime = MainRuntime::current();
    let chat = &settings.chat;
    let client = http_client(chat.timeouts.connect());
    let metrics = metrics::Metrics::new(&telemetry::init_metrics("chat"), &chat.model);
    let llm = llm::LlmClient::new(
        Upstream::new("ollama", &settings.ollama.url, client.clone()),
        chat.model.clone(),
        chat.timeouts,
    );
    let exchange = Arc::new(exchange::Exchange {
        max_message_chars: chat.max_message_chars,
        history_turns: chat.history_turns,
        system_prompt: chat.system_prompt.clone(),
        classifier: classify::Classifier::new(&chat.classification)?,
        llm: llm.clone(),
        sessions: sessions::SessionClient::new(Upstream::new(
            "session",
            &chat.session_url,
            client.clone(),
        )),
        writer: db::MessageWriter::start(pool.clone(), chat.write_retry_queue, &tasks),
        escalator: escalation::Escalator::new(
            &settings.n8n,
            client,
            tasks.clone(),
            runtime.clone(),
            metrics.clone(),
        ),
        metrics,
        tasks: tasks.clone(),
        runtime,
    });
    let state = Arc::new(routes::State {
        exchange,
        max_body_bytes: settings.gateway.max_body_bytes,
    });
    Ok(ServiceBuilder::new("chat", &chat.server)
        .readiness(check_fn("database", move || {
            let pool = pool.clone();
            Box::pin(async move {
                db::ping(&pool)
                    .await
                    .map_err(|e| ErrorChain(&e).to_string())
            })
        }))
        .readiness(check_fn("ollama", move || {
            let llm = llm.clone();
            Box::pin(async move { llm.ping().await })
        }))
        .openapi(openapi::document(chat.max_message_chars))
        .tasks(tasks)
        .bind(move |cfg| routes::configure(cfg, state.clone()))?)
}

async fn migrate_with_patience(pool: &deadpool_postgres::Pool) -> Result<(), db::DbError> {
    let give_up = tokio::time::Instant::now() + MIGRATION_PATIENCE;
    loop {
        match db::migrate(pool).await {
            Ok(applied) => {
                tracing::info!(?applied, "database schema up to date");
                return Ok(());
            }
            Err(error) if tokio::time::Instant::now() < give_up => {
                tracing::warn!(error = %ErrorChain(&error), "database not ready; retrying migrations");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(error) => return Err(error),
        }
    }
}
