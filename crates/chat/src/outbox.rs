//! The durable outbox: exchanges the database could not take yet.
//!
//! When the insert of an exchange's row fails, the row is appended here, to
//! a [redb](https://www.redb.org) file on local disk committed with fsync,
//! before the answer is completed: a crash during a database outage
//! (`kill -9`, an OOM kill, a node reboot that keeps the disk) loses nothing.
//! Appends of concurrent exchanges are group-committed: one writer thread
//! takes every append waiting and commits them in one transaction. A drain
//! task writes the rows to PostgreSQL oldest first once it answers again
//! (`ON CONFLICT (id) DO NOTHING`: a row replayed twice is stored once), then
//! removes them; at start-up the same task replays what an earlier process
//! left. Rows inserted at once never touch the disk.
//!
//! The outbox is bounded by `chat.outbox.max_bytes` of rows: when it holds
//! that much, [`Outbox::is_full`] and chat refuses new exchanges with 503
//! `storage_unavailable` (appends of exchanges already under way still go
//! in). Its depth, bytes and the age of its oldest row are metrics
//! (`chatbot_outbox_rows`, `chatbot_outbox_bytes`,
//! `chatbot_outbox_oldest_age_seconds`).
//!
//! Why redb: an embedded, maintained, pure-Rust transactional store (no C
//! toolchain, unlike SQLite), whose commit is the fsync this needs; a
//! hand-written journal would need its own framing, checksums and
//! compaction.

use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use chrono::Utc;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::db::MessageRow;

/// Sequence number → a [`Held`] row as JSON.
const ROWS: TableDefinition<u64, &[u8]> = TableDefinition::new("rows");
/// The most appends one commit takes.
const MAX_BATCH: usize = 1024;

/// Why the outbox could not keep or give back a row.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The file could not be opened, written or read.
    #[error("outbox storage failed")]
    Storage(#[from] redb::Error),
    /// Its directory could not be made.
    #[error("outbox directory: {0}")]
    Directory(#[from] std::io::Error),
    /// A row could not be encoded or decoded.
    #[error("outbox row encoding")]
    Encoding(#[from] serde_json::Error),
    /// The commit of the batch the row was in failed.
    #[error("the outbox commit failed")]
    Batch(#[source] Arc<OutboxError>),
    /// Every outbox file next to `chat.outbox.path` is held by another
    /// process.
    #[error("all {SLOTS} outbox files at {} are in use by other processes", .0.display())]
    AllInUse(std::path::PathBuf),
    /// The writer thread is gone (the process is stopping).
    #[error("the outbox writer has stopped")]
    Closed,
}

macro_rules! storage_error {
    ($($kind:ty),*) => {$(
        impl From<$kind> for OutboxError {
            fn from(error: $kind) -> Self {
                Self::Storage(error.into())
            }
        }
    )*};
}
storage_error!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// A row as held, with when it was appended.
#[derive(Serialize, Deserialize)]
struct Held {
    appended_ms: i64,
    row: MessageRow,
}

type Done = oneshot::Sender<Result<(), Arc<OutboxError>>>;

/// The outbox of one chat process (see the module docs).
pub struct Outbox {
    db: Arc<Database>,
    /// To the writer thread; `None` only while dropping.
    appends: Option<mpsc::Sender<(Vec<u8>, Option<Done>)>>,
    writer: Option<std::thread::JoinHandle<()>>,
    stats: Arc<Stats>,
    max_bytes: u64,
}

impl Drop for Outbox {
    /// Closes the writer thread's channel and waits for it, so the file is
    /// released when the outbox is.
    fn drop(&mut self) {
        drop(self.appends.take());
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// What the outbox holds, kept up to date by every commit.
#[derive(Default)]
pub struct Stats {
    /// Rows held.
    pub rows: AtomicU64,
    /// Bytes of rows held.
    pub bytes: AtomicU64,
    /// When the oldest row held was appended (ms since the epoch), 0: none.
    pub oldest_ms: AtomicI64,
    next_seq: AtomicU64,
}

impl Outbox {
    /// Opens (or creates) the outbox at `path` and starts its writer
    /// thread. When another process holds that file (replicas sharing a
    /// volume), the first free of `<stem>.1.<ext>` to `<stem>.15.<ext>` is
    /// taken instead, so each replica has one of its own and a restarted
    /// one takes over a file a dead one left.
    pub fn open(path: &Path, max_bytes: u64) -> Result<Self, OutboxError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let db = Arc::new(open_free_slot(path)?);
        let stats = Arc::new(Stats::default());
        recount(&db, &stats)?;
        let (appends, received) = mpsc::channel();
        let (thread_db, thread_stats) = (db.clone(), stats.clone());
        let writer = std::thread::Builder::new()
            .name("chat-outbox".into())
            .spawn(move || write_loop(&thread_db, &thread_stats, &received))?;
        Ok(Self {
            db,
            appends: Some(appends),
            writer: Some(writer),
            stats,
            max_bytes,
        })
    }

    /// Counters for the metrics.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Whether it holds `chat.outbox.max_bytes` or more.
    pub fn is_full(&self) -> bool {
        self.stats.bytes.load(Ordering::Relaxed) >= self.max_bytes
    }

    /// Appends `row`; returns once it is on disk.
    pub async fn append(&self, row: &MessageRow) -> Result<(), OutboxError> {
        let (done, committed) = oneshot::channel();
        self.appends
            .as_ref()
            .ok_or(OutboxError::Closed)?
            .send((encode(row)?, Some(done)))
            .map_err(|_| OutboxError::Closed)?;
        committed
            .await
            .map_err(|_| OutboxError::Closed)?
            .map_err(OutboxError::Batch)
    }

    /// Appends `row` and commits it on this thread, without waiting for
    /// the writer thread (for exchanges cut short, from a `Drop`).
    pub fn append_now(&self, row: &MessageRow) -> Result<(), OutboxError> {
        commit(&self.db, &self.stats, &[encode(row)?])
    }

    /// Up to `max` of the oldest rows, with their sequence numbers.
    pub fn oldest(&self, max: usize) -> Result<Vec<(u64, MessageRow)>, OutboxError> {
        let read = self.db.begin_read()?;
        let table = match read.open_table(ROWS) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(error) => return Err(error.into()),
        };
        let mut rows = Vec::new();
        for entry in table.iter()?.take(max) {
            let (seq, value) = entry?;
            let held: Held = serde_json::from_slice(value.value())?;
            rows.push((seq.value(), held.row));
        }
        Ok(rows)
    }

    /// Removes the rows `seqs` (written to PostgreSQL).
    pub fn remove(&self, seqs: &[u64]) -> Result<(), OutboxError> {
        let write = self.db.begin_write()?;
        {
            let mut table = write.open_table(ROWS)?;
            for seq in seqs {
                if let Some(value) = table.remove(seq)? {
                    let len = value.value().len() as u64;
                    self.stats.rows.fetch_sub(1, Ordering::Relaxed);
                    self.stats.bytes.fetch_sub(len, Ordering::Relaxed);
                }
            }
            let oldest = match table.first()? {
                Some((_, value)) => serde_json::from_slice::<Held>(value.value())?.appended_ms,
                None => 0,
            };
            self.stats.oldest_ms.store(oldest, Ordering::Relaxed);
        }
        write.commit()?;
        Ok(())
    }
}

/// Files one directory of replicas may use: `path`, then numbered ones.
const SLOTS: usize = 16;

fn open_free_slot(path: &Path) -> Result<Database, OutboxError> {
    for slot in 0..SLOTS {
        let candidate = if slot == 0 {
            path.to_owned()
        } else {
            let stem = path.file_stem().unwrap_or_default().to_string_lossy();
            let ext = path
                .extension()
                .map(|e| format!(".{}", e.to_string_lossy()));
            path.with_file_name(format!("{stem}.{slot}{}", ext.unwrap_or_default()))
        };
        match Database::create(&candidate) {
            Ok(db) => {
                tracing::info!(path = %candidate.display(), "outbox open");
                return Ok(db);
            }
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {}
            Err(error) => return Err(error.into()),
        }
    }
    Err(OutboxError::AllInUse(path.to_owned()))
}

fn encode(row: &MessageRow) -> Result<Vec<u8>, OutboxError> {
    Ok(serde_json::to_vec(&Held {
        appended_ms: Utc::now().timestamp_millis(),
        row: row.clone(),
    })?)
}

/// Counts what an earlier process left, and where the sequence goes on.
fn recount(db: &Database, stats: &Stats) -> Result<(), OutboxError> {
    let write = db.begin_write()?;
    {
        let table = write.open_table(ROWS)?;
        let mut bytes = 0;
        for entry in table.iter()? {
            bytes += entry?.1.value().len() as u64;
        }
        stats.rows.store(table.len()?, Ordering::Relaxed);
        stats.bytes.store(bytes, Ordering::Relaxed);
        if let Some((seq, value)) = table.last()? {
            stats.next_seq.store(seq.value() + 1, Ordering::Relaxed);
            drop(value);
        }
        if let Some((_, value)) = table.first()? {
            let held: Held = serde_json::from_slice(value.value())?;
            stats.oldest_ms.store(held.appended_ms, Ordering::Relaxed);
        }
    }
    write.commit()?;
    Ok(())
}

/// Commits `rows` (encoded) in one transaction.
fn commit(db: &Database, stats: &Stats, rows: &[Vec<u8>]) -> Result<(), OutboxError> {
    let write = db.begin_write()?;
    let mut bytes = 0;
    {
        let mut table = write.open_table(ROWS)?;
        for row in rows {
            let seq = stats.next_seq.fetch_add(1, Ordering::Relaxed);
            table.insert(seq, row.as_slice())?;
            bytes += row.len() as u64;
        }
    }
    write.commit()?;
    if stats.rows.fetch_add(rows.len() as u64, Ordering::Relaxed) == 0 {
        let now = Utc::now().timestamp_millis();
        let _ = stats
            .oldest_ms
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
    }
    stats.bytes.fetch_add(bytes, Ordering::Relaxed);
    Ok(())
}

/// The writer thread: everything waiting goes into one commit.
fn write_loop(db: &Database, stats: &Stats, received: &mpsc::Receiver<(Vec<u8>, Option<Done>)>) {
    while let Ok(first) = received.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match received.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let (rows, waiting): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let outcome = commit(db, stats, &rows).map_err(|error| {
            tracing::error!(error = %chatbot_common::error::ErrorChain(&error),
                rows = rows.len(), "the outbox could not commit");
            Arc::new(error)
        });
        for done in waiting.into_iter().flatten() {
            let _ = done.send(outcome.clone());
        }
    }
}

/// How long the drain waits between two tries while PostgreSQL fails.
pub const DRAIN_RETRY: Duration = Duration::from_secs(1);
/// Rows the drain writes per round.
pub const DRAIN_BATCH: usize = 256;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_second_process_takes_a_file_of_its_own_and_a_later_one_takes_it_over() {
        let dir = std::env::temp_dir().join(format!("outbox-slots-{}", uuid::Uuid::new_v4()));
        let path = dir.join("chat-outbox.redb");
        let first = Outbox::open(&path, 1 << 20).unwrap();
        let second = Outbox::open(&path, 1 << 20).unwrap();
        let row = crate::db::MessageRow {
            id: uuid::Uuid::new_v4(),
            session_id: Some(uuid::Uuid::new_v4()),
            api: chatbot_common::api::Api::Native,
            user_id: "u".into(),
            api_key_id: None,
            timestamp: Utc::now(),
            kind: chatbot_common::api::MessageType::Other,
            urgency: chatbot_common::api::Urgency::Low,
            message: "kept".into(),
            reply: None,
            model: "m".into(),
            response_time_ms: 1,
            prompt_tokens: None,
            completion_tokens: None,
            streamed: false,
            error: None,
            error_code: None,
        };
        second.append_now(&row).unwrap();
        assert!(dir.join("chat-outbox.1.redb").exists());
        assert!(first.oldest(10).unwrap().is_empty(), "files of their own");
        drop(second);
        let third = Outbox::open(&path, 1 << 20).unwrap();
        let left = third.oldest(10).unwrap();
        assert_eq!(left.len(), 1, "the file the second left, with its row");
        assert_eq!(left[0].1.id, row.id);
        assert_eq!(third.stats().rows.load(Ordering::Relaxed), 1);
        drop((first, third));
        let _ = std::fs::remove_dir_all(dir);
    }
}
