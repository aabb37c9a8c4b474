//! The chat service: one exchange at a time.
//!
//! The path of a message: [`routes`] reads the request, [`exchange`] validates
//! it, reads the history from Redis through `session-store` ([`sessions`]), classifies it
//! ([`classify`]), calls the LLM through the Ollama API ([`llm`]), stores the
//! exchange in PostgreSQL ([`db`]), appends the turns to the session and, for
//! `HIGH` urgency, posts to n8n ([`escalation`]). Start with [`build`].

pub mod backends;
pub mod classify;
pub mod db;
pub mod escalation;
pub mod exchange;
pub mod llm;
pub mod metrics;
pub mod outbox;
pub mod routes;
pub mod sessions;

use std::sync::Arc;
use std::time::Duration;

use chatbot_common::config::Settings;
use chatbot_common::error::ErrorChain;
use chatbot_common::probe::probe_fn;
use chatbot_common::server::{Inflight, RunningService, ServiceBuilder};
use chatbot_common::telemetry;
use chatbot_common::upstream::{Upstream, http_client};
use tokio_util::sync::CancellationToken;
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
    /// The outbox could not be opened.
    #[error("outbox: {}", ErrorChain(.0))]
    Outbox(#[from] outbox::OutboxError),
    /// The Redis connection could not be set up (a bad `redis.url`).
    #[error("redis: {}", ErrorChain(.0))]
    Redis(#[from] chatbot_common::pools::PoolSetupError),
    /// The listener could not be bound.
    #[error("could not listen: {0}")]
    Io(#[from] std::io::Error),
}

/// Builds the service: pool, migrations (when `database.migrate_on_start`;
/// if the database cannot be reached, they are applied when it answers and
/// exchanges wait in the outbox meanwhile), clients, and the bound server.
pub async fn build(settings: &Settings) -> Result<RunningService, StartError> {
    let pool = db::pool(&settings.database)?;
    // A pool of its own: the connections requests use are opened on the
    // HTTP worker that uses them (see `server::Inflight`).
    let migrate_later = settings.database.migrate_on_start
        && match db::migrate(&db::pool(&settings.database)?).await {
            Ok(applied) => {
                tracing::info!(?applied, "database schema up to date");
                false
            }
            Err(error) => {
                tracing::error!(error = %ErrorChain(&error),
                    "migrations could not be applied at start: chat starts anyway, applies them \
                     when the database answers and keeps exchanges in its outbox meanwhile");
                true
            }
        };
    let tasks = TaskTracker::new();
    let stop = CancellationToken::new();
    let meter = telemetry::init_metrics("chat");
    let usage = pool.clone();
    chatbot_common::pools::export_usage(&meter, "postgres", move || {
        chatbot_common::pools::postgres_usage(&usage)
    });
    let store = session_store::SessionStore::connect(&settings.redis, &settings.session)?;
    let sessions = sessions::Sessions::new(store);
    let inflight = Inflight::default();
    let parts = Parts {
        pool: pool.clone(),
        sessions,
        tasks: &tasks,
        stop: &stop,
        inflight: &inflight,
        meter: &meter,
        migrate_later,
    };
    let exchange = Arc::new(exchange(settings, parts)?);
    let state = Arc::new(routes::State {
        exchange: exchange.clone(),
        // What the gateway accepted, translated: the compatible APIs' bodies
        // may grow a little (an id, escapes), never twice over.
        max_body_bytes: settings.gateway.max_body_bytes.saturating_mul(2),
    });
    let for_storage = exchange.clone();
    let service = ServiceBuilder::new("chat", &settings.chat.server)
        .internal(settings.internal.token.as_ref())
        .readiness(
            // Exchanges can be kept: in PostgreSQL, or in the outbox while
            // it has room. A database outage alone leaves chat ready (it
            // answers and loses nothing); the aggregator's `database` check
            // reports the outage.
            "storage",
            probe_fn(move || {
                let ready = for_storage.writer.ready();
                Box::pin(async move { ready })
            }),
        )
        .readiness(
            "ollama",
            probe_fn(move || {
                let ready = exchange.llm.ready();
                Box::pin(async move { ready })
            }),
        )
        .openapi(routes::document(settings.chat.max_message_chars))
        .tasks(tasks)
        .inflight(inflight)
        .bind(move |cfg| routes::configure(cfg, state.clone()))?;
    Ok(service.on_stop(stop))
}

/// What the exchange pipeline is built from, besides the settings.
struct Parts<'a> {
    pool: deadpool_postgres::Pool,
    sessions: sessions::Sessions,
    tasks: &'a TaskTracker,
    stop: &'a CancellationToken,
    inflight: &'a Inflight,
    meter: &'a opentelemetry::metrics::Meter,
    migrate_later: bool,
}

/// The exchange pipeline with its clients, built once.
fn exchange(settings: &Settings, parts: Parts<'_>) -> Result<exchange::Exchange, StartError> {
    let chat = &settings.chat;
    let client = http_client(chat.timeouts.connect());
    let metrics = metrics::Metrics::new(parts.meter);
    let upstreams = settings
        .ollama
        .backends()
        .into_iter()
        .map(|url| Upstream::new("ollama", url, client.clone()))
        .collect();
    let llm = backends::Backends::new(
        upstreams,
        &chat.model,
        |upstream| llm::LlmClient::new(upstream, chat.timeouts),
        parts.meter,
    );
    parts.tasks.spawn(llm.clone().watch(parts.stop.clone()));
    let outbox = outbox::Outbox::open(&chat.outbox.path, chat.outbox.max_bytes)?;
    metrics::export_outbox(parts.meter, outbox.stats());
    Ok(exchange::Exchange {
        max_message_chars: chat.max_message_chars,
        history_turns: chat.history_turns,
        session_idle: Duration::from_secs(settings.session.idle_timeout_secs),
        system_prompt: chat.system_prompt.clone(),
        classifier: classify::Classifier::new(&chat.classification)?,
        llm,
        sessions: parts.sessions,
        writer: db::MessageWriter::start(
            parts.pool,
            db::pool(&settings.database)?,
            outbox,
            parts.migrate_later,
            parts.tasks,
        ),
        slots: Arc::new(tokio::sync::Semaphore::new(chat.max_inflight)),
        escalator: escalation::Escalator::new(
            &settings.n8n,
            client.clone(),
            parts.inflight.clone(),
            metrics.clone(),
        ),
        metrics,
        inflight: parts.inflight.clone(),
        log_message_text: settings.log.include_message_text,
    })
}
