//! Streamed answers at the same time per API key, shared by every gateway
//! replica.
//!
//! Each open stream holds a [`Slot`]: a member of the sorted set
//! `<prefix>streams:<key id>` in Redis, scored by when its lease ends. One
//! script drops expired leases, counts, and adds the new one if the count is
//! under the key's limit; dropping the slot (the stream ended or the client
//! left) removes it. The lease (the longest a stream may last, chat's
//! `timeouts.total_ms` and a margin) only matters when a gateway dies with
//! streams open: their slots free themselves when it ends.
//!
//! When Redis cannot answer, this replica counts its own streams
//! ([`crate::fallback`]).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::Duration;

use uuid::Uuid;

use crate::fallback::{Fallback, RedisFailure};

/// Takes a slot: KEYS[1] the key's set; ARGV[1] the new member, ARGV[2] the
/// limit, ARGV[3] the lease in ms. Returns 1 when taken, 0 when full.
static ACQUIRE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
        if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
        redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
        redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
        return 1
        ",
    )
});

/// The stream slots of one gateway replica.
pub struct StreamSlots {
    redis: redis::aio::ConnectionManager,
    prefix: String,
    lease: Duration,
    local: Mutex<HashMap<Uuid, u32>>,
    fallback: Fallback,
}

/// An open stream's place; dropping it frees the place.
pub struct Slot {
    slots: Arc<StreamSlots>,
    key: Uuid,
    held: Held,
}

enum Held {
    Redis(String),
    Local,
}

impl StreamSlots {
    /// Slots kept in `redis` (see `chatbot_common::pools::redis_shared`)
    /// under `prefix`, each leased for `lease`.
    pub fn new(redis: redis::aio::ConnectionManager, prefix: &str, lease: Duration) -> Arc<Self> {
        Arc::new(Self {
            redis,
            prefix: prefix.to_owned(),
            lease,
            local: Mutex::new(HashMap::new()),
            fallback: Fallback::new("stream limits"),
        })
    }

    /// A slot for one more stream of key `key`, allowed `max` at once;
    /// `None` when all are taken.
    pub async fn acquire(self: &Arc<Self>, key: Uuid, max: u32) -> Option<Slot> {
        let member = Uuid::new_v4().to_string();
        let held = match self
            .fallback
            .ask(self.acquire_in_redis(key, max, &member))
            .await
        {
            Some(true) => Held::Redis(member),
            Some(false) => return None,
            None => self.acquire_locally(key, max)?,
        };
        Some(Slot {
            slots: self.clone(),
            key,
            held,
        })
    }

    fn set(&self, key: Uuid) -> String {
        format!("{}streams:{key}", self.prefix)
    }

    async fn acquire_in_redis(
        &self,
        key: Uuid,
        max: u32,
        member: &str,
    ) -> Result<bool, RedisFailure> {
        let mut conn = self.redis.clone();
        let lease = u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX);
        let taken: u8 = ACQUIRE
            .key(self.set(key))
            .arg(member)
            .arg(max)
            .arg(lease.max(1))
            .invoke_async(&mut conn)
            .await?;
        Ok(taken == 1)
    }

    fn acquire_locally(&self, key: Uuid, max: u32) -> Option<Held> {
        let mut local = self.local.lock().unwrap_or_else(PoisonError::into_inner);
        let open = local.entry(key).or_default();
        (*open < max).then(|| {
            *open += 1;
            Held::Local
        })
    }

    fn release(&self, key: Uuid, held: &Held) {
        match held {
            Held::Local => {
                let mut local = self.local.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(open) = local.get_mut(&key) {
                    *open = open.saturating_sub(1);
                    if *open == 0 {
                        local.remove(&key);
                    }
                }
            }
            Held::Redis(member) => {
                let (mut conn, set, member) = (self.redis.clone(), self.set(key), member.clone());
                // Best effort: a slot that cannot be removed ends with its lease.
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move {
                        let _: Result<u8, _> =
                            redis::AsyncCommands::zrem(&mut conn, set, member).await;
                    });
                }
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.release(self.key, &self.held);
    }
}
