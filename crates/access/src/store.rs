//! The `api_keys` table: one row per key ever made, revoked ones kept (with
//! `revoked_at`) so listings and stored messages can still name them.

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde::Serialize;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::token::{Digest, Token};

/// A key's own limits; `None` takes the configured default (`[limits]`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// Requests per minute.
    pub requests_per_minute: Option<u32>,
    /// Streamed answers at the same time.
    pub concurrent_streams: Option<u32>,
}

/// What is known about a key (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKey {
    /// The key's id, recorded with every message it sends.
    pub id: Uuid,
    /// The operator's name for it (unique among active keys).
    pub name: String,
    /// The key's first characters, to recognise it.
    pub prefix: String,
    /// May see the health verdict's details.
    pub admin: bool,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Its own limits.
    pub limits: Limits,
}

/// A failure of the key table.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No connection could be had.
    #[error("cannot reach PostgreSQL")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// A statement failed (for example the table is missing: run the migrations).
    #[error("the api_keys query failed")]
    Query(#[from] tokio_postgres::Error),
    /// An active key already has this name.
    #[error("an active key is already named '{0}'")]
    NameTaken(String),
    /// The system's random source failed.
    #[error("no random bytes for a new key")]
    Random(#[from] getrandom::Error),
}

const COLUMNS: &str =
    "id, name, prefix, admin, created_at, revoked_at, requests_per_minute, concurrent_streams";

/// The key table.
#[derive(Clone)]
pub struct KeyStore {
    pool: Pool,
}

impl KeyStore {
    /// The table behind `pool`.
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }

    /// Makes a key named `name`; the returned [`Token`] is the only copy.
    pub async fn create(
        &self,
        name: &str,
        admin: bool,
        limits: Limits,
    ) -> Result<(ApiKey, Token), StoreError> {
        let token = Token::generate()?;
        let client = self.pool.get().await?;
        let row = client
            .query_one(
                &format!(
                    "INSERT INTO api_keys (id, name, prefix, digest, admin, requests_per_minute, \
                     concurrent_streams) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
                ),
                &[
                    &Uuid::new_v4(),
                    &name,
                    &token.shown_prefix(),
                    &token.digest().as_slice(),
                    &admin,
                    &limits.requests_per_minute.map(to_sql_int),
                    &limits.concurrent_streams.map(to_sql_int),
                ],
            )
            .await
            .map_err(|e| match e.code() {
                Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
                    StoreError::NameTaken(name.to_owned())
                }
                _ => StoreError::Query(e),
            })?;
        Ok((from_row(&row), token))
    }

    /// Every key, newest first, revoked ones included.
    pub async fn list(&self) -> Result<Vec<ApiKey>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &format!("SELECT {COLUMNS} FROM api_keys ORDER BY created_at DESC, name"),
                &[],
            )
            .await?;
        Ok(rows.iter().map(from_row).collect())
    }

    /// Revokes the active key named `name_or_prefix` (or whose shown prefix
    /// it is); `None` when there is none.
    pub async fn revoke(&self, name_or_prefix: &str) -> Result<Option<ApiKey>, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &format!(
                    "UPDATE api_keys SET revoked_at = now() \
                     WHERE revoked_at IS NULL AND (name = $1 OR prefix = $1) RETURNING {COLUMNS}"
                ),
                &[&name_or_prefix],
            )
            .await?;
        Ok(row.as_ref().map(from_row))
    }

    /// The active keys with their digests: what the gateway's cache holds.
    pub async fn active(&self) -> Result<Vec<(Digest, ApiKey)>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &format!("SELECT digest, {COLUMNS} FROM api_keys WHERE revoked_at IS NULL"),
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                let digest: &[u8] = row.get("digest");
                Some((Digest::try_from(digest).ok()?, from_row(row)))
            })
            .collect())
    }
}

fn to_sql_int(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

fn from_sql_int(value: Option<i32>) -> Option<u32> {
    value.and_then(|v| u32::try_from(v).ok())
}

fn from_row(row: &Row) -> ApiKey {
    ApiKey {
        id: row.get("id"),
        name: row.get("name"),
        prefix: row.get("prefix"),
        admin: row.get("admin"),
        created_at: row.get("created_at"),
        revoked_at: row.get("revoked_at"),
        limits: Limits {
            requests_per_minute: from_sql_int(row.get("requests_per_minute")),
            concurrent_streams: from_sql_int(row.get("concurrent_streams")),
        },
    }
}
