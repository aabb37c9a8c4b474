//! Requests per minute per API key, shared by every gateway replica.
//!
//! The rule is GCRA (the generic cell rate algorithm): a key with a limit of
//! `L` a minute may send `L` requests at once, then one every `60 s / L`.
//! Its state is one number, the theoretical arrival time (TAT), kept in Redis
//! under `<prefix>ratelimit:<key id>` and moved by one Lua script per
//! request ([`SCRIPT`], atomic, Redis's own clock, so replicas need no
//! synchronised clocks). [`gcra`] is the same arithmetic in Rust: the
//! per-instance limiter that applies while Redis cannot be reached, and the
//! specification the script is tested against.
//!
//! When Redis fails or takes longer than
//! [`REDIS_BUDGET`](crate::fallback::REDIS_BUDGET), this replica limits on
//! its own for a second before trying Redis again ([`crate::fallback`]):
//! never closed for everyone, never open without limit, though with `R`
//! replicas a key may get up to `R × L` a minute during the outage.
//!
//! Why not `governor`: its GCRA is per process only, and its quota is fixed per
//! limiter, while ours differs per key and must give the same answers and
//! headers whether Redis or the fallback decided.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use uuid::Uuid;

use crate::fallback::{Fallback, RedisFailure};
use crate::lease::Leases;
/// The period limits are counted over.
const PERIOD_MICROS: i64 = 60_000_000;
/// The highest limit a minute (one request a microsecond): GCRA's interval
/// must stay at least one microsecond.
pub const MAX_PER_MINUTE: u32 = 60_000_000;

/// The outcome of one check, with what the `RateLimit-*` headers say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The request may go on.
    pub allowed: bool,
    /// Requests per minute for this key.
    pub limit: u32,
    /// Requests that could be sent right now.
    pub remaining: u32,
    /// Until the key's whole allowance is back.
    pub reset: Duration,
    /// For a rejected request: when to try again.
    pub retry_after: Duration,
}

/// One GCRA step: what it decided, how many cells it granted (0 when
/// refused) and the TAT to store (`None`: refused, unchanged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// The decision, `remaining` counting what is left after the grant.
    pub decision: Decision,
    /// Cells granted: at least one when allowed, at most the number asked.
    pub granted: u32,
    /// The new TAT.
    pub tat: Option<i64>,
}

/// One GCRA step at `now` (µs) for `limit` a minute over the stored `tat`,
/// asking for `wanted` cells (at least one): grants as many as the key has
/// left, up to `wanted`, or refuses when it has none.
pub fn gcra(tat: Option<i64>, now: i64, limit: u32, wanted: u32) -> Step {
    let limit = i64::from(limit.clamp(1, MAX_PER_MINUTE));
    let interval = PERIOD_MICROS / limit;
    let tat = tat.unwrap_or(now).max(now);
    // Whole cells of allowance left at `now`.
    let left = (now + limit * interval - tat) / interval;
    let micros = |d: i64| Duration::from_micros(u64::try_from(d).unwrap_or(0));
    let retry_at = tat + interval - limit * interval;
    let limit = u32::try_from(limit).unwrap_or(u32::MAX);
    if left < 1 {
        let decision = Decision {
            allowed: false,
            limit,
            remaining: 0,
            reset: micros(tat - now),
            retry_after: micros(retry_at - now),
        };
        return Step {
            decision,
            granted: 0,
            tat: None,
        };
    }
    let granted = left.min(i64::from(wanted.max(1)));
    let new_tat = tat + granted * interval;
    let decision = Decision {
        allowed: true,
        limit,
        remaining: u32::try_from(left - granted).unwrap_or(u32::MAX),
        reset: micros(new_tat - now),
        retry_after: Duration::ZERO,
    };
    Step {
        decision,
        granted: u32::try_from(granted).unwrap_or(1),
        tat: Some(new_tat),
    }
}

/// [`gcra`] in Redis: KEYS[1] the key's TAT, ARGV[1] the limit a minute
/// (1 to [`MAX_PER_MINUTE`]), ARGV[2] the cells wanted (at least 1).
/// Returns `{granted, remaining, reset µs, retry-after µs}`.
pub static SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
        local limit = tonumber(ARGV[1])
        local interval = math.floor(60000000 / limit)
        local tat = tonumber(redis.call('GET', KEYS[1])) or now
        if tat < now then tat = now end
        local left = math.floor((now + limit * interval - tat) / interval)
        if left < 1 then
            return {0, 0, tat - now, tat + interval - limit * interval - now}
        end
        local granted = math.min(left, math.max(1, tonumber(ARGV[2])))
        local new_tat = tat + granted * interval
        redis.call('SET', KEYS[1], string.format('%d', new_tat),
            'PX', math.max(1, math.ceil((new_tat - now) / 1000)))
        return {granted, left - granted, new_tat - now, 0}
        ",
    )
});

/// The per-key limiter of one gateway replica.
pub struct Limiter {
    redis: redis::aio::ConnectionManager,
    prefix: String,
    local: Mutex<HashMap<Uuid, i64>>,
    leases: Leases,
    fallback: Fallback,
}

impl Limiter {
    /// Limits kept in `redis` (see `chatbot_common::pools::redis_shared`)
    /// under `prefix` (`session.key_prefix`).
    pub fn new(redis: redis::aio::ConnectionManager, prefix: &str) -> Self {
        Self {
            redis,
            prefix: prefix.to_owned(),
            local: Mutex::new(HashMap::new()),
            leases: Leases::default(),
            fallback: Fallback::new("rate limits"),
        }
    }

    /// Counts one request of key `id`, limited to `limit` a minute (at most
    /// [`MAX_PER_MINUTE`]): from this replica's lease when it holds one
    /// ([`crate::lease`]), else in Redis, else on its own.
    pub async fn check(&self, id: Uuid, limit: u32) -> Decision {
        let limit = limit.clamp(1, MAX_PER_MINUTE);
        if let Some(decision) = self.leases.take(id, limit) {
            return decision;
        }
        let wanted = self.leases.wanted(id, limit);
        match self
            .fallback
            .ask(self.check_in_redis(id, limit, wanted))
            .await
        {
            Some((decision, granted)) if decision.allowed => {
                self.leases.keep(id, granted.saturating_sub(1), decision)
            }
            // Cells another request of this key just leased may be left.
            Some((refused, _)) => self.leases.take(id, limit).unwrap_or(refused),
            None => self.check_locally(id, limit),
        }
    }

    async fn check_in_redis(
        &self,
        id: Uuid,
        limit: u32,
        wanted: u32,
    ) -> Result<(Decision, u32), RedisFailure> {
        let mut conn = self.redis.clone();
        let (granted, remaining, reset, retry_after): (u32, u32, u64, u64) = SCRIPT
            .key(format!("{}ratelimit:{id}", self.prefix))
            .arg(limit)
            .arg(wanted)
            .invoke_async(&mut conn)
            .await?;
        let decision = Decision {
            allowed: granted > 0,
            limit,
            remaining,
            reset: Duration::from_micros(reset),
            retry_after: Duration::from_micros(retry_after),
        };
        Ok((decision, granted))
    }

    fn check_locally(&self, id: Uuid, limit: u32) -> Decision {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        let mut local = self.local.lock().unwrap_or_else(PoisonError::into_inner);
        let step = gcra(local.get(&id).copied(), now, limit, 1);
        if let Some(tat) = step.tat {
            local.insert(id, tat);
        }
        step.decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_the_limit_passes_then_one_per_interval() {
        let (mut tat, now) = (None, 1_000_000_000);
        let mut allowed = 0;
        for _ in 0..30 {
            let step = gcra(tat, now, 20, 1);
            if step.decision.allowed {
                allowed += 1;
                tat = step.tat;
            } else {
                assert_eq!(step.decision.remaining, 0);
                assert_eq!(step.decision.retry_after, Duration::from_secs(3));
            }
        }
        assert_eq!(allowed, 20);
        let later = gcra(tat, now + 3_000_000, 20, 1).decision;
        assert!(later.allowed, "one more after 60 s / 20");
        assert_eq!(later.remaining, 0);
    }

    #[test]
    fn the_highest_limits_do_not_break_the_arithmetic() {
        for limit in [MAX_PER_MINUTE, u32::MAX] {
            let step = gcra(None, 0, limit, 1);
            assert!(step.decision.allowed);
            assert_eq!(step.decision.limit, MAX_PER_MINUTE);
            assert_eq!(step.tat, Some(1));
        }
    }

    #[test]
    fn remaining_counts_down_and_reset_is_when_all_is_back() {
        let first = gcra(None, 0, 60, 1);
        let d = first.decision;
        assert_eq!((d.remaining, d.reset), (59, Duration::from_secs(1)));
        let d = gcra(first.tat, 0, 60, 1).decision;
        assert_eq!((d.remaining, d.reset), (58, Duration::from_secs(2)));
    }

    #[test]
    fn several_cells_are_granted_up_to_what_is_left() {
        let first = gcra(None, 0, 10, 4);
        assert_eq!((first.granted, first.decision.remaining), (4, 6));
        let second = gcra(first.tat, 0, 10, 8);
        assert_eq!((second.granted, second.decision.remaining), (6, 0));
        let third = gcra(second.tat, 0, 10, 8);
        assert_eq!(third.granted, 0);
        assert!(!third.decision.allowed);
        assert_eq!(third.decision.retry_after, Duration::from_secs(6));
    }
}
