//! The Redis script against its Rust specification, on a real Redis.

#![allow(clippy::unwrap_used)]

use access::limit::{SCRIPT, gcra};
use test_support::redis::{fresh_prefix, shared_redis};

/// Asks the script for `wanted` cells of `key` (limit `limit` a minute).
async fn ask(
    conn: &mut redis::aio::MultiplexedConnection,
    key: &str,
    limit: u32,
    wanted: u32,
) -> (u32, u32) {
    let (granted, remaining, _, _): (u32, u32, u64, u64) = SCRIPT
        .key(key)
        .arg(limit)
        .arg(wanted)
        .invoke_async(conn)
        .await
        .unwrap();
    (granted, remaining)
}

#[tokio::test]
async fn the_script_grants_what_gcra_grants() {
    let client = redis::Client::open(shared_redis().url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let key = format!("{}ratelimit:script", fresh_prefix());
    // A limit of 60 a minute: one cell a second, so the few microseconds
    // between calls never give a cell back.
    let mut tat = None;
    let now = 1_000_000_000;
    for wanted in [1, 5, 20, 40, 3, 1] {
        let step = gcra(tat, now, 60, wanted);
        tat = step.tat.or(tat);
        let answer = ask(&mut conn, &key, 60, wanted).await;
        assert_eq!(
            answer,
            (step.granted, step.decision.remaining),
            "asking for {wanted}"
        );
    }
}

#[tokio::test]
async fn a_busy_key_on_leases_gets_its_limit_and_no_more() {
    let client = redis::Client::open(shared_redis().url()).unwrap();
    let redis = redis::aio::ConnectionManager::new(client).await.unwrap();
    let limiter = access::Limiter::new(redis, &fresh_prefix());
    let id = uuid::Uuid::new_v4();
    // 6,000 a minute: leases of up to 10 cells, one cell back every 10 ms.
    let started = std::time::Instant::now();
    let mut allowed = 0;
    for _ in 0..6_010 {
        if limiter.check(id, 6_000).await.allowed {
            allowed += 1;
        }
    }
    let refilled = started.elapsed().as_millis() / 10;
    assert!(allowed >= 6_000, "the whole allowance: {allowed}");
    assert!(
        allowed <= 6_000 + refilled + 1,
        "{allowed} allowed, over 6,000 and the {refilled} cells back since"
    );
}
