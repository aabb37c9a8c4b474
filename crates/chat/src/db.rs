//! PostgreSQL: the connection pool, versioned migrations and the `messages` table.
//!
//! Migrations are SQL files in `crates/chat/migrations/`, embedded in the
//! binary and applied in order inside one transaction that holds an advisory
//! lock, so several chat processes starting together apply each exactly once.
//! Applied versions are recorded in `schema_migrations`; running them again
//! changes nothing.
//!
//! A failed write is not dropped: [`MessageWriter`] keeps it in a bounded
//! in-memory queue and retries in the background until the database is back.

use std::sync::Arc;
use std::time::Duration;

use chatbot_common::api::{MessageType, Urgency};
use chatbot_common::config::DatabaseSettings;
use chatbot_common::error::{ErrorChain, ErrorCode};
use chatbot_common::health::LiveSignal;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

/// Every migration, in order: (version, name, SQL).
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "create messages",
        include_str!("../migrations/0001_messages.sql"),
    ),
    (
        2,
        "api keys",
        include_str!("../migrations/0002_api_keys.sql"),
    ),
];

/// Arbitrary constant naming the advisory lock that serialises migrations.
const MIGRATION_LOCK: i64 = 0x0063_6861_7462_6f74;

/// Why a database operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The pool could not be built from the settings.
    #[error(transparent)]
    Setup(#[from] chatbot_common::pools::PoolSetupError),
    /// No connection could be had.
    #[error("database unavailable")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// A statement failed.
    #[error("database statement failed")]
    Query(#[from] tokio_postgres::Error),
}

/// Builds the pool (connections open lazily).
pub fn pool(settings: &DatabaseSettings) -> Result<Pool, DbError> {
    Ok(chatbot_common::pools::postgres(settings)?)
}

/// Applies pending migrations; returns the versions applied now.
pub async fn migrate(pool: &Pool) -> Result<Vec<i32>, DbError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )
    .await?;
    let done: Vec<i32> = tx
        .query("SELECT version FROM schema_migrations", &[])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut applied = Vec::new();
    for (version, name, sql) in MIGRATIONS {
        if done.contains(version) {
            continue;
        }
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .await?;
        applied.push(*version);
    }
    tx.commit().await?;
    Ok(applied)
}

/// One exchange, as stored.
#[derive(Debug, Clone)]
pub struct MessageRow {
    /// The exchange id, returned to the client as `message_id`.
    pub id: Uuid,
    /// The session.
    pub session_id: Uuid,
    /// The user.
    pub user_id: String,
    /// The API key it was sent with (`None`: authentication off).
    pub api_key_id: Option<Uuid>,
    /// When the message arrived.
    pub timestamp: DateTime<Utc>,
    /// Classified type.
    pub kind: MessageType,
    /// Classified urgency.
    pub urgency: Urgency,
    /// The user's text.
    pub message: String,
    /// The reply (`None` when the LLM failed before answering).
    pub reply: Option<String>,
    /// The model asked.
    pub model: String,
    /// Milliseconds from arrival to the end of the reply or the failure.
    pub response_time_ms: i32,
    /// Prompt tokens, when the LLM reported them.
    pub prompt_tokens: Option<i32>,
    /// Reply tokens, when the LLM reported them.
    pub completion_tokens: Option<i32>,
    /// Whether the client asked for a stream.
    pub streamed: bool,
    /// What went wrong, `None` on success.
    pub error: Option<String>,
    /// The stable error code, `None` on success.
    pub error_code: Option<ErrorCode>,
}

/// Inserts one row; inserting the same id twice is a no-op.
pub async fn insert(pool: &Pool, row: &MessageRow) -> Result<(), DbError> {
    let client = pool.get().await?;
    let statement = client
        .prepare_cached(
            "INSERT INTO messages (id, session_id, user_id, timestamp, type, urgency, message,
                reply, model, response_time, prompt_tokens, completion_tokens, streamed, error,
                error_code, api_key_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
             ON CONFLICT (id) DO NOTHING",
        )
        .await?;
    client
        .execute(
            &statement,
            &[
                &row.id,
                &row.session_id,
                &row.user_id,
                &row.timestamp,
                &row.kind.as_str(),
                &row.urgency.as_str(),
                &row.message,
                &row.reply,
                &row.model,
                &row.response_time_ms,
                &row.prompt_tokens,
                &row.completion_tokens,
                &row.streamed,
                &row.error,
                &row.error_code.map(ErrorCode::as_str),
                &row.api_key_id,
            ],
        )
        .await?;
    Ok(())
}

/// Writes rows, keeping the ones the database refused for a later retry.
#[derive(Clone)]
pub struct MessageWriter {
    pool: Pool,
    retry: mpsc::Sender<MessageRow>,
    live: Arc<LiveSignal>,
}

/// How long the retry loop waits between two attempts at the oldest row.
const RETRY_EVERY: Duration = Duration::from_secs(1);

impl MessageWriter {
    /// A writer whose retry loop runs on `tasks` until shutdown.
    ///
    /// Requests write through `pool`; the retry loop, which runs on the
    /// process's runtime and outlives the HTTP workers at shutdown, through
    /// `retry_pool`, a pool of its own.
    pub fn start(pool: Pool, retry_pool: Pool, queue: usize, tasks: &TaskTracker) -> Self {
        let (retry, pending) = mpsc::channel(queue.max(1));
        tasks.spawn(retry_loop(retry_pool, pending));
        Self {
            pool,
            retry,
            live: Arc::default(),
        }
    }

    /// What live writes say about the database.
    pub fn live(&self) -> &LiveSignal {
        &self.live
    }

    /// Stores `row` now, or queues it for retry when the database fails.
    /// Returns whether the row is already stored.
    pub async fn write(&self, row: MessageRow) -> bool {
        match insert(&self.pool, &row).await {
            Ok(()) => {
                self.live.success();
                true
            }
            Err(error) => {
                self.live.failure(ErrorChain(&error).to_string());
                tracing::warn!(message_id = %row.id, error = %ErrorChain(&error),
                    "storing the exchange failed; queued for retry");
                self.queue(row);
                false
            }
        }
    }

    /// Hands `row` to the background retry loop without waiting.
    pub fn queue(&self, row: MessageRow) {
        if let Err(full) = self.retry.try_send(row) {
            let row = full.into_inner();
            tracing::error!(message_id = %row.id, session_id = %row.session_id,
                "retry queue full; exchange not stored");
        }
    }
}

async fn retry_loop(pool: Pool, mut pending: mpsc::Receiver<MessageRow>) {
    while let Some(row) = pending.recv().await {
        loop {
            match insert(&pool, &row).await {
                Ok(()) => {
                    tracing::info!(message_id = %row.id, "queued exchange stored");
                    break;
                }
                Err(error) => {
                    tracing::debug!(message_id = %row.id, error = %ErrorChain(&error), "retry failed");
                    tokio::time::sleep(RETRY_EVERY).await;
                }
            }
        }
    }
}
