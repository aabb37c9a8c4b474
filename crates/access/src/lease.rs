//! Cells of a busy key's allowance taken from Redis ahead of use.
//!
//! A key sending many requests a second would cost a Redis round trip on
//! each. Instead, one call may take several cells of the key's GCRA
//! allowance at once ([`crate::limit::SCRIPT`] grants up to the number
//! asked, never more than the key has left), and this replica spends them on
//! the next requests without asking again.
//!
//! How many to ask for adapts to the key: one at first; twice as many each
//! time a lease is used up before it expires; half as many when one expires
//! unused. It never exceeds [`MAX_LEASE`] nor 100 ms of the key's limit
//! (`limit / 600`), so a key with the default 600 a minute is checked in
//! Redis on every request, and a replica never holds more than 100 ms of a
//! key's allowance. Cells left when a lease expires ([`LEASE_TTL`]) are not
//! given back: a key can be held below its limit by that much, never above
//! it. Near the limit Redis grants fewer cells than asked, so a burst over
//! the limit is refused exactly as without leases.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::limit::Decision;

/// The most cells one Redis call takes.
pub const MAX_LEASE: u32 = 64;
/// How long leased cells stay usable.
pub const LEASE_TTL: Duration = Duration::from_millis(100);
/// Leases are capped at this share of a key's limit a minute (100 ms of it).
const CAP_DIVISOR: u32 = 600;

/// This replica's unused cells, per key.
#[derive(Default)]
pub(crate) struct Leases {
    by_key: Mutex<HashMap<Uuid, Lease>>,
}

struct Lease {
    limit: u32,
    cells: u32,
    want: u32,
    expires: Instant,
    /// What Redis said was left beyond the lease.
    remaining: u32,
    reset_at: Instant,
}

impl Lease {
    fn usable(&self, limit: u32, now: Instant) -> bool {
        self.limit == limit && self.cells > 0 && now < self.expires
    }
}

impl Leases {
    /// Spends one leased cell of key `id`, if it holds one for `limit`.
    pub(crate) fn take(&self, id: Uuid, limit: u32) -> Option<Decision> {
        let now = Instant::now();
        let mut leases = self.lock();
        let lease = leases.get_mut(&id).filter(|l| l.usable(limit, now))?;
        lease.cells -= 1;
        Some(Decision {
            allowed: true,
            limit,
            remaining: lease.remaining.saturating_add(lease.cells),
            reset: lease.reset_at.saturating_duration_since(now),
            retry_after: Duration::ZERO,
        })
    }

    /// How many cells to ask Redis for, for key `id` limited to `limit`.
    pub(crate) fn wanted(&self, id: Uuid, limit: u32) -> u32 {
        let cap = (limit / CAP_DIVISOR).clamp(1, MAX_LEASE);
        let now = Instant::now();
        let mut leases = self.lock();
        let Some(lease) = leases.get_mut(&id) else {
            return 1;
        };
        lease.want = if lease.cells == 0 && now < lease.expires {
            lease.want.saturating_mul(2)
        } else if lease.cells > 0 {
            lease.want / 2
        } else {
            lease.want
        }
        .clamp(1, cap);
        lease.want
    }

    /// Keeps `spare` cells Redis granted beyond the one being used now, and
    /// returns `decision` with them counted as remaining.
    pub(crate) fn keep(&self, id: Uuid, spare: u32, decision: Decision) -> Decision {
        let now = Instant::now();
        let mut leases = self.lock();
        let lease = leases.entry(id).or_insert(Lease {
            limit: decision.limit,
            cells: 0,
            want: 1,
            expires: now,
            remaining: 0,
            reset_at: now,
        });
        if !lease.usable(decision.limit, now) {
            lease.cells = 0;
        }
        lease.limit = decision.limit;
        lease.cells = lease.cells.saturating_add(spare);
        lease.expires = now + LEASE_TTL;
        lease.remaining = decision.remaining;
        lease.reset_at = now + decision.reset;
        Decision {
            remaining: decision.remaining.saturating_add(lease.cells),
            ..decision
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Lease>> {
        self.by_key.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn granted(limit: u32, remaining: u32) -> Decision {
        Decision {
            allowed: true,
            limit,
            remaining,
            reset: Duration::from_secs(1),
            retry_after: Duration::ZERO,
        }
    }

    #[test]
    fn kept_cells_are_spent_one_by_one_then_redis_is_asked_again() {
        let (leases, id) = (Leases::default(), Uuid::new_v4());
        assert_eq!(leases.take(id, 60_000), None);
        let first = leases.keep(id, 2, granted(60_000, 100));
        assert_eq!(first.remaining, 102);
        assert_eq!(leases.take(id, 60_000).map(|d| d.remaining), Some(101));
        assert_eq!(leases.take(id, 60_000).map(|d| d.remaining), Some(100));
        assert_eq!(leases.take(id, 60_000), None);
        assert_eq!(leases.take(id, 6_000), None, "another limit, another lease");
    }

    #[test]
    fn busy_keys_ask_for_more_up_to_a_tenth_of_a_second_of_their_limit() {
        let (leases, id) = (Leases::default(), Uuid::new_v4());
        assert_eq!(leases.wanted(id, 6_000), 1);
        leases.keep(id, 0, granted(6_000, 100));
        let asked: Vec<u32> = (0..6)
            .map(|_| {
                let want = leases.wanted(id, 6_000);
                leases.keep(id, 0, granted(6_000, 100));
                want
            })
            .collect();
        assert_eq!(
            asked,
            [2, 4, 8, 10, 10, 10],
            "6,000 a minute: 10 per 100 ms"
        );
        assert_eq!(leases.wanted(id, 600), 1, "the default limit: no lease");
    }

    #[test]
    fn an_unused_lease_halves_the_next_and_expires() {
        let (leases, id) = (Leases::default(), Uuid::new_v4());
        leases.keep(id, 0, granted(60_000, 100));
        for _ in 0..3 {
            leases.wanted(id, 60_000);
            leases.keep(id, 0, granted(60_000, 100));
        }
        assert_eq!(leases.wanted(id, 60_000), 16);
        leases.keep(id, 15, granted(60_000, 100));
        std::thread::sleep(LEASE_TTL);
        assert_eq!(leases.take(id, 60_000), None, "expired");
        assert_eq!(leases.wanted(id, 60_000), 8);
    }
}
