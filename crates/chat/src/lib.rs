//! The chat service: one exchange at a time.
//!
//! The path of a message: [`routes`] reads the request, [`exchange`] validates
//! it, reads the history from Redis through `session-store` ([`sessions`]), classifies it
//! ([`classify`]), calls the LLM through the Ollama API ([`llm`]), stores the
//! exchange in PostgreSQL ([`db`]), appends the turns to the session and, for
//! `HIGH` urgency, posts to n8n ([`escalation`]). Start with [`build`].

pub mod classify;
pub mod db;
pub mod escalation;
pub mod exchange;
pub mod llm;
pub mod metrics;
pub mod routes;
pub mod sessions;

use std::sync::Arc;
use std::time::Duration;

use chatbot_common::config::Settings;
use chatbot_common::error::ErrorChain;
use chatbot_common::probe::{Check, Postgres, probe_fn};
use chatbot_common::server::{Inflight, RunningService, ServiceBuilder};
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
    /// The Redis connection could not be set up (a bad `redis.url`).
    #[error("redis: {}", ErrorChain(.0))]
    Redis(#[from] chatbot_common::pools::PoolSetupError),
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
        // A pool of its own: the connections requests use are opened on the
        // HTTP worker that uses them (see `server::Inflight`).
        migrate_with_patience(&db::pool(&settings.database)?).await?;
    }
    let tasks = TaskTracker::new();
    let meter = telemetry::init_metrics("chat");
    let usage = pool.clone();
    chatbot_common::pools::export_usage(&meter, "postgres", move || {
        chatbot_common::pools::postgres_usage(&usage)
    });
    let store = session_store::SessionStore::connect(&settings.redis, &settings.session)?;
    let sessions = sessions::Sessions::new(store);
    let inflight = Inflight::default();
    let exchange = Arc::new(exchange(
        settings,
        pool.clone(),
        sessions,
        &tasks,
        &inflight,
        &meter,
    )?);
    let state = Arc::new(routes::State {
        exchange: exchange.clone(),
        max_body_bytes: settings.gateway.max_body_bytes,
    });
    let (for_db, database) = (exchange.clone(), Arc::new(Postgres(pool)));
    Ok(ServiceBuilder::new("chat", &settings.chat.server)
        .internal(settings.internal.token.as_ref())
        .readiness(
            "database",
            probe_fn(move || {
                let (exchange, database) = (for_db.clone(), database.clone());
                Box::pin(async move {
                    exchange.writer.live().check()?;
                    database.check().await
                })
            }),
        )
        .readiness(
            "ollama",
            probe_fn(move || {
                let exchange = exchange.clone();
                Box::pin(async move { exchange.llm.ping().await })
            }),
        )
        .openapi(routes::document(settings.chat.max_message_chars))
        .tasks(tasks)
        .inflight(inflight)
        .bind(move |cfg| routes::configure(cfg, state.clone()))?)
}

/// The exchange pipeline with its clients, built once.
fn exchange(
    settings: &Settings,
    pool: deadpool_postgres::Pool,
    sessions: sessions::Sessions,
    tasks: &TaskTracker,
    inflight: &Inflight,
    meter: &opentelemetry::metrics::Meter,
) -> Result<exchange::Exchange, StartError> {
    let chat = &settings.chat;
    let client = http_client(chat.timeouts.connect());
    let metrics = metrics::Metrics::new(meter, &chat.model);
    let upstream = |name, url: &str| Upstream::new(name, url, client.clone());
    Ok(exchange::Exchange {
        max_message_chars: chat.max_message_chars,
        history_turns: chat.history_turns,
        system_prompt: chat.system_prompt.clone(),
        classifier: classify::Classifier::new(&chat.classification)?,
        llm: llm::LlmClient::new(
            upstream("ollama", &settings.ollama.url),
            chat.model.clone(),
            chat.timeouts,
        ),
        sessions,
        writer: db::MessageWriter::start(
            pool,
            db::pool(&settings.database)?,
            chat.write_retry_queue,
            tasks,
        ),
        escalator: escalation::Escalator::new(
            &settings.n8n,
            client.clone(),
            inflight.clone(),
            metrics.clone(),
        ),
        metrics,
        inflight: inflight.clone(),
        log_message_text: settings.log.include_message_text,
    })
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
