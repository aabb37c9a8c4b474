//! PostgreSQL: the connection pool, versioned migrations and the `messages` table.
//!
//! Migrations are SQL files in `crates/chat/migrations/`, embedded in the
//! binary and applied in order inside one transaction that holds an advisory
//! lock, so several chat processes starting together apply each exactly once.
//! Applied versions are recorded in `schema_migrations`; running them again
//! changes nothing.
//!
//! A failed write is not dropped: [`MessageWriter`] keeps it in the durable
//! [`Outbox`] and writes it when the database is back.

use std::sync::Arc;

use chatbot_common::api::{Api, MessageType, Role, Turn, Urgency};
use chatbot_common::config::DatabaseSettings;
use chatbot_common::error::{ErrorChain, ErrorCode};
use chatbot_common::health::LiveSignal;
use chatbot_common::probe::CheckError;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde::{Deserialize, Serialize};
use session_store::Owner;
use tokio::sync::{Notify, mpsc};
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::outbox::{DRAIN_BATCH, DRAIN_RETRY, Outbox, OutboxError};

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
    (
        3,
        "compatible apis",
        include_str!("../migrations/0003_compatible_apis.sql"),
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
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MessageRow {
    /// The exchange id, returned to the client as `message_id`.
    pub id: Uuid,
    /// The session (`None`: a stateless exchange of a compatible API).
    pub session_id: Option<Uuid>,
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
    /// The API it came through.
    #[serde(default)]
    pub api: Api,
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
                error_code, api_key_id, api)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                $17)
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
                &row.api.as_str(),
            ],
        )
        .await?;
    Ok(())
}

/// Writes rows: to PostgreSQL at once, or to the [`Outbox`] when it fails,
/// from which a drain task writes them when it answers again.
#[derive(Clone)]
pub struct MessageWriter {
    pool: Pool,
    outbox: Arc<Outbox>,
    wake: Arc<Notify>,
    live: Arc<LiveSignal>,
    /// Never sent on: the drain task's last round starts when every writer
    /// is gone (the last ones go with exchanges cut at shutdown).
    _alive: mpsc::Sender<()>,
}

/// The drain task's part of the writer.
struct Drain {
    pool: Pool,
    outbox: Arc<Outbox>,
    wake: Arc<Notify>,
    live: Arc<LiveSignal>,
}

impl MessageWriter {
    /// A writer whose drain task runs on `tasks` until every clone of the
    /// writer is dropped.
    ///
    /// Requests write through `pool`; the drain task, which runs on the
    /// process's runtime and outlives the HTTP workers at shutdown, through
    /// `drain_pool`, a pool of its own. The drain task first applies the
    /// migrations when `migrate` (a start-up that could not reach the
    /// database), then writes what the outbox holds, including what an
    /// earlier process left; its last round, when the writers are gone,
    /// takes what exchanges cut at shutdown kept.
    pub fn start(
        pool: Pool,
        drain_pool: Pool,
        outbox: Outbox,
        migrate: bool,
        tasks: &TaskTracker,
    ) -> Self {
        let (alive, gone) = mpsc::channel(1);
        let writer = Self {
            pool,
            outbox: Arc::new(outbox),
            wake: Arc::default(),
            live: Arc::new(LiveSignal::named("database")),
            _alive: alive,
        };
        let drain = Drain {
            pool: drain_pool,
            outbox: writer.outbox.clone(),
            wake: writer.wake.clone(),
            live: writer.live.clone(),
        };
        tasks.spawn(drain.run(migrate, gone));
        writer
    }

    /// Readiness: exchanges can be kept, in PostgreSQL or in the outbox.
    pub fn ready(&self) -> Result<(), CheckError> {
        match self.live.check() {
            Err(failing) if self.outbox.is_full() => Err(failing),
            _ => Ok(()),
        }
    }

    /// The outbox (for its metrics and fullness).
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Stores `row` in PostgreSQL, or in the outbox when that fails; `Err`
    /// only when neither could take it.
    pub async fn write(&self, row: MessageRow) -> Result<(), OutboxError> {
        match insert(&self.pool, &row).await {
            Ok(()) => {
                self.live.success();
                Ok(())
            }
            Err(error) => {
                self.live.failure(ErrorChain(&error).to_string());
                tracing::debug!(message_id = %row.id, error = %ErrorChain(&error),
                    "storing the exchange failed; keeping it in the outbox");
                self.outbox.append(&row).await.inspect_err(|error| {
                    tracing::error!(message_id = %row.id, error = %ErrorChain(error),
                        "the exchange could be neither stored nor kept");
                })?;
                self.wake.notify_one();
                Ok(())
            }
        }
    }

    /// The last turns (at most `turns`) of session `id` of `owner` as
    /// PostgreSQL recorded them, if its last exchange is more recent than
    /// `idle` (a session Redis would still hold); `None` otherwise or when
    /// the database cannot say.
    pub async fn recent_turns(
        &self,
        id: Uuid,
        owner: &Owner,
        turns: usize,
        idle: std::time::Duration,
    ) -> Option<Vec<Turn>> {
        let client = self.pool.get().await.ok()?;
        let exchanges = i64::try_from(turns.div_ceil(2)).unwrap_or(i64::MAX);
        let idle = f64::from(u32::try_from(idle.as_secs()).unwrap_or(u32::MAX));
        let rows = client
            .query(
                "SELECT id, timestamp, message, reply FROM messages
                 WHERE session_id = $1 AND user_id = $2 AND api_key_id IS NOT DISTINCT FROM $3
                   AND reply IS NOT NULL AND timestamp > now() - make_interval(secs => $4)
                 ORDER BY timestamp DESC LIMIT $5",
                &[&id, &owner.user_id, &owner.api_key, &idle, &exchanges],
            )
            .await
            .ok()?;
        if rows.is_empty() {
            return None;
        }
        let mut history = Vec::with_capacity(rows.len() * 2);
        for row in rows.iter().rev() {
            let turn = |role, content: String| Turn {
                role,
                content,
                message_id: Some(row.get(0)),
                created_at: row.get(1),
            };
            history.push(turn(Role::User, row.get(2)));
            history.push(turn(Role::Assistant, row.get(3)));
        }
        let skip = history.len().saturating_sub(turns);
        Some(history.split_off(skip))
    }

    /// Keeps `row` in the outbox at once, from a `Drop` (an exchange cut
    /// short): no await, the commit happens on this thread.
    pub fn keep_now(&self, row: &MessageRow) {
        if let Err(error) = self.outbox.append_now(row) {
            tracing::error!(message_id = %row.id, error = %ErrorChain(&error),
                "the cut exchange could not be kept; it is lost");
        }
        self.wake.notify_one();
    }
}

impl Drain {
    async fn run(self, mut migrate: bool, mut gone: mpsc::Receiver<()>) {
        loop {
            tokio::select! {
                _ = gone.recv() => {
                    // Every writer is gone: what was kept last (exchanges
                    // cut at the end of the grace period) goes in now if it
                    // can; otherwise it waits in the outbox for the next start.
                    if !migrate {
                        self.drain_all().await;
                    }
                    return;
                }
                () = self.wake.notified() => {}
                () = tokio::time::sleep(DRAIN_RETRY) => {}
            }
            if migrate {
                migrate = !migrate_logged(&self.pool).await;
            }
            if migrate || !self.drain_all().await {
                // The database still fails: wait before the next try
                // rather than at every exchange that wakes us.
                tokio::time::sleep(DRAIN_RETRY).await;
            }
        }
    }

    /// Writes the outbox's rows oldest first until it is empty (`true`) or
    /// a write fails (`false`).
    async fn drain_all(&self) -> bool {
        loop {
            let outbox = self.outbox.clone();
            let batch = tokio::task::spawn_blocking(move || outbox.oldest(DRAIN_BATCH)).await;
            let rows = match batch {
                Ok(Ok(rows)) if !rows.is_empty() => rows,
                Ok(Ok(_)) => return true,
                Ok(Err(error)) => {
                    tracing::error!(error = %ErrorChain(&error), "the outbox cannot be read");
                    return false;
                }
                Err(_) => return false,
            };
            let mut written = Vec::with_capacity(rows.len());
            let mut failed = false;
            for (seq, row) in rows {
                match insert(&self.pool, &row).await {
                    Ok(()) => written.push(seq),
                    Err(error) => {
                        self.live.failure(ErrorChain(&error).to_string());
                        failed = true;
                        break;
                    }
                }
            }
            if !written.is_empty() {
                self.live.success();
                tracing::info!(rows = written.len(), "exchanges from the outbox stored");
                let outbox = self.outbox.clone();
                let removed = tokio::task::spawn_blocking(move || outbox.remove(&written)).await;
                if let Ok(Err(error)) = removed {
                    // They will be written again (a no-op) at the next round.
                    tracing::error!(error = %ErrorChain(&error), "the outbox could not drop stored rows");
                }
            }
            if failed {
                return false;
            }
        }
    }
}

/// [`migrate`], logging the outcome; whether it succeeded.
async fn migrate_logged(pool: &Pool) -> bool {
    match migrate(pool).await {
        Ok(applied) => {
            tracing::info!(?applied, "database schema up to date");
            true
        }
        Err(error) => {
            tracing::debug!(error = %ErrorChain(&error), "migrations could not be applied yet");
            false
        }
    }
}
