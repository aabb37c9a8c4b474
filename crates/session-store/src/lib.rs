//! The Redis data layout of sessions: the one owner of session data.
//!
//! The session service (reads, deletes, counts) and chat (reads the recent
//! turns, appends each exchange) both go through [`SessionStore`]; nothing
//! else reads or writes these keys.
//!
//! With prefix `P` (`session.key_prefix`):
//!
//! | key | type | content |
//! |---|---|---|
//! | `P session:{id}` | hash | `user_id`, `api_key` (the id of the API key that made it, empty when none), `created_at`, `updated_at` (RFC 3339) |
//! | `P session:{id}:turns` | list | one JSON [`Turn`] per element, oldest first |
//! | `P active` | sorted set | session ids scored by last activity (ms since epoch) |
//! | `P session:{id}:deleted` | string | present for the idle timeout after a delete, so chat never brings a deleted session back from PostgreSQL |
//!
//! Both per-session keys carry the idle TTL, refreshed on every append. The
//! sorted set is pruned of expired members on writes, and counted with
//! `ZCOUNT` over the live score range, so a count is O(log n).
//! Every round trip is bounded by `redis.timeout_ms`.
//!
//! A session belongs to an [`Owner`]: the API key that made it and the end
//! user within it. Reads and deletes for another key find nothing (the
//! session service answers 404, as for an unknown session).

use std::sync::LazyLock;
use std::time::Duration;

use chatbot_common::api::{SessionView, Turn};
use chatbot_common::config::{RedisSettings, SessionSettings};
use chrono::{DateTime, Utc};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use uuid::Uuid;

/// Appends turns to a session (see [`SessionStore::append`]). Keys: the
/// session hash, its turns list, the active set. Arguments: the user to
/// create it for (empty: do not create), the RFC 3339 time, the idle timeout
/// in seconds, the turn cap, the session id, the time in ms, the lowest live
/// score of the active set (members below it are pruned), the API key of a
/// session to create, then the JSON turns, pushed 1,000 at a time (Lua's `unpack` takes about 8,000 values at
/// most). Returns the stored turn count, or -1 when the session does not
/// exist and is not to be created. Sent by hash (`EVALSHA`), loaded on first
/// use.
static APPEND: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
        if redis.call('EXISTS', KEYS[1]) == 0 then
            if ARGV[1] == '' then return -1 end
            redis.call('HSET', KEYS[1], 'user_id', ARGV[1], 'api_key', ARGV[8],
                'created_at', ARGV[2])
        end
        for first = 9, #ARGV, 1000 do
            redis.call('RPUSH', KEYS[2], unpack(ARGV, first, math.min(first + 999, #ARGV)))
        end
        redis.call('LTRIM', KEYS[2], -tonumber(ARGV[4]), -1)
        redis.call('HSET', KEYS[1], 'updated_at', ARGV[2])
        redis.call('EXPIRE', KEYS[1], ARGV[3])
        redis.call('EXPIRE', KEYS[2], ARGV[3])
        redis.call('ZADD', KEYS[3], ARGV[6], ARGV[5])
        redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[7])
        return redis.call('LLEN', KEYS[2])
        ",
    )
});

/// Deletes a session if it belongs to the API key in ARGV[1] (empty: none),
/// leaving its tombstone. Keys: the session hash, its turns list, the active
/// set, the tombstone; ARGV[2] the session id, ARGV[3] the idle timeout in
/// seconds. Returns 1 when deleted, 0 when missing or another key's.
static DELETE_OWNED: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
        local key = redis.call('HGET', KEYS[1], 'api_key')
        if redis.call('EXISTS', KEYS[1]) == 0 or (key or '') ~= ARGV[1] then return 0 end
        redis.call('DEL', KEYS[1], KEYS[2])
        redis.call('ZREM', KEYS[3], ARGV[2])
        redis.call('SET', KEYS[4], '1', 'EX', ARGV[3])
        return 1
        ",
    )
});

/// Whose a session is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The API key that made it (`None`: made with authentication off).
    pub api_key: Option<Uuid>,
    /// The end user within that key.
    pub user_id: String,
}

/// The stored form of an optional API key id.
fn key_field(api_key: Option<Uuid>) -> String {
    api_key.map(|k| k.to_string()).unwrap_or_default()
}

fn parse_key_field(id: Uuid, raw: Option<&str>) -> Result<Option<Uuid>, StoreError> {
    match raw {
        None | Some("") => Ok(None),
        Some(raw) => Uuid::parse_str(raw)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("session {id} api_key: {e}"))),
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A command failed.
    #[error("redis command failed")]
    Redis(#[from] redis::RedisError),
    /// Redis did not answer in time.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    /// A stored value could not be read back.
    #[error("stored session data is corrupt: {0}")]
    Corrupt(String),
}

/// Sessions in Redis.
pub struct SessionStore {
    redis: ConnectionManager,
    prefix: String,
    idle: Duration,
    max_turns: usize,
    timeout: Duration,
}

impl SessionStore {
    /// A store on one shared, multiplexed connection
    /// ([`chatbot_common::pools::redis_shared`]: opened on first use,
    /// reopened after a failure).
    pub fn connect(
        redis: &RedisSettings,
        session: &SessionSettings,
    ) -> Result<Self, chatbot_common::pools::PoolSetupError> {
        let timeout = Duration::from_millis(redis.timeout_ms);
        Ok(Self {
            redis: chatbot_common::pools::redis_shared(redis)?,
            prefix: session.key_prefix.clone(),
            idle: Duration::from_secs(session.idle_timeout_secs),
            max_turns: session.max_turns,
            timeout,
        })
    }

    fn key(&self, id: Uuid) -> String {
        format!("{}session:{id}", self.prefix)
    }

    fn turns_key(&self, id: Uuid) -> String {
        format!("{}session:{id}:turns", self.prefix)
    }

    fn tombstone_key(&self, id: Uuid) -> String {
        format!("{}session:{id}:deleted", self.prefix)
    }

    fn active_key(&self) -> String {
        format!("{}active", self.prefix)
    }

    async fn bounded<T>(
        &self,
        op: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.timeout, op)
            .await
            .map_err(|_| StoreError::Timeout(self.timeout))?
    }

    fn idle_secs(&self) -> i64 {
        i64::try_from(self.idle.as_secs()).unwrap_or(i64::MAX)
    }

    fn expires_at(&self, updated: DateTime<Utc>) -> DateTime<Utc> {
        updated + chrono::Duration::seconds(self.idle_secs())
    }

    /// The connection, for the readiness probe.
    pub fn connection(&self) -> ConnectionManager {
        self.redis.clone()
    }

    /// Scores below this belong to sessions idle longer than the timeout.
    fn oldest_live_score(&self, now: DateTime<Utc>) -> String {
        format!("({}", now.timestamp_millis() - self.idle_secs() * 1000)
    }

    /// The session with its turns, or `None` when unknown, expired or
    /// made with another API key than `api_key`.
    pub async fn get(
        &self,
        id: Uuid,
        api_key: Option<Uuid>,
    ) -> Result<Option<SessionView>, StoreError> {
        let (fields, raw_turns): (Vec<(String, String)>, Vec<String>) = self
            .bounded(async {
                let mut conn = self.redis.clone();
                Ok(redis::pipe()
                    .hgetall(self.key(id))
                    .lrange(self.turns_key(id), 0, -1)
                    .query_async(&mut conn)
                    .await?)
            })
            .await?;
        if fields.is_empty() {
            return Ok(None);
        }
        let field = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .ok_or_else(|| StoreError::Corrupt(format!("session {id} has no {name}")))
        };
        let time = |name: &str| -> Result<DateTime<Utc>, StoreError> {
            DateTime::parse_from_rfc3339(&field(name)?)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| StoreError::Corrupt(format!("session {id} {name}: {e}")))
        };
        let owner_key = fields
            .iter()
            .find(|(k, _)| k == "api_key")
            .map(|(_, v)| v.as_str());
        if parse_key_field(id, owner_key)? != api_key {
            return Ok(None);
        }
        let turns = decode_turns(id, &raw_turns)?;
        let updated_at = time("updated_at")?;
        Ok(Some(SessionView {
            session_id: id,
            user_id: field("user_id")?,
            created_at: time("created_at")?,
            updated_at,
            expires_at: self.expires_at(updated_at),
            turns,
        }))
    }

    /// The owner of a session and its last `last` turns (oldest first), in
    /// one round trip, or `None` when the session is unknown or expired.
    /// Chat reads this before every answer: only what goes into the prompt.
    pub async fn recent(
        &self,
        id: Uuid,
        last: usize,
    ) -> Result<Option<(Owner, Vec<Turn>)>, StoreError> {
        let ((user_id, api_key), raw_turns): ((Option<String>, Option<String>), Vec<String>) = self
            .bounded(async {
                let mut conn = self.redis.clone();
                let mut pipe = redis::pipe();
                pipe.cmd("HMGET")
                    .arg(self.key(id))
                    .arg("user_id")
                    .arg("api_key");
                match isize::try_from(last) {
                    Ok(last) if last > 0 => pipe.lrange(self.turns_key(id), -last, -1),
                    // LRANGE of "the last 0" would be the whole list.
                    _ => pipe.lrange(self.turns_key(id), 1, 0),
                };
                Ok(pipe.query_async(&mut conn).await?)
            })
            .await?;
        let Some(user_id) = user_id else {
            return Ok(None);
        };
        let owner = Owner {
            api_key: parse_key_field(id, api_key.as_deref())?,
            user_id,
        };
        Ok(Some((owner, decode_turns(id, &raw_turns)?)))
    }

    /// Appends turns, trims to the cap and refreshes the expiry, in one
    /// atomic round trip ([`APPEND`]). Returns the number of stored turns,
    /// or `None` when the session is unknown and `create_for` (the owner of
    /// a session to create) is not given.
    pub async fn append(
        &self,
        id: Uuid,
        turns: &[Turn],
        create_for: Option<&Owner>,
    ) -> Result<Option<usize>, StoreError> {
        let now = Utc::now();
        let mut invocation = APPEND.prepare_invoke();
        invocation
            .key(self.key(id))
            .key(self.turns_key(id))
            .key(self.active_key())
            .arg(create_for.map_or("", |owner| owner.user_id.as_str()))
            .arg(now.to_rfc3339())
            .arg(self.idle_secs())
            .arg(self.max_turns)
            .arg(id.to_string())
            .arg(now.timestamp_millis())
            .arg(self.oldest_live_score(now))
            .arg(key_field(create_for.and_then(|owner| owner.api_key)));
        // Only the last `max_turns` can stay: the rest need not travel.
        let kept = turns.len().saturating_sub(self.max_turns);
        for turn in &turns[kept..] {
            let encoded =
                serde_json::to_string(turn).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            invocation.arg(encoded);
        }
        let stored: i64 = self
            .bounded(async {
                let mut conn = self.redis.clone();
                Ok(invocation.invoke_async(&mut conn).await?)
            })
            .await?;
        Ok(usize::try_from(stored).ok())
    }

    /// Deletes a session made with `api_key`; `false` when there was none
    /// (unknown, expired or another key's), in one atomic step.
    pub async fn delete(&self, id: Uuid, api_key: Option<Uuid>) -> Result<bool, StoreError> {
        let mut invocation = DELETE_OWNED.prepare_invoke();
        invocation
            .key(self.key(id))
            .key(self.turns_key(id))
            .key(self.active_key())
            .key(self.tombstone_key(id))
            .arg(key_field(api_key))
            .arg(id.to_string())
            .arg(self.idle_secs());
        self.bounded(async {
            let mut conn = self.redis.clone();
            let removed: u8 = invocation.invoke_async(&mut conn).await?;
            Ok(removed == 1)
        })
        .await
    }

    /// Whether session `id` was deleted within the idle timeout.
    pub async fn was_deleted(&self, id: Uuid) -> Result<bool, StoreError> {
        self.bounded(async {
            let mut conn = self.redis.clone();
            Ok(conn.exists(self.tombstone_key(id)).await?)
        })
        .await
    }

    /// Sessions active within the idle timeout: one `ZCOUNT`, O(log n).
    pub async fn count_active(&self) -> Result<u64, StoreError> {
        let now = Utc::now();
        self.bounded(async {
            let mut conn = self.redis.clone();
            Ok(conn
                .zcount(self.active_key(), self.oldest_live_score(now), "+inf")
                .await?)
        })
        .await
    }
}

fn decode_turns(id: Uuid, raw: &[String]) -> Result<Vec<Turn>, StoreError> {
    raw.iter()
        .map(|t| serde_json::from_str::<Turn>(t))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| StoreError::Corrupt(format!("session {id} turn: {e}")))
}
