//! The session layout against a real Redis: creation by the first append,
//! the turn cap, idle expiry, the active count and its pruning.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use chatbot_common::api::Turn;
use chatbot_common::config::Settings;
use session_store::{Owner, SessionStore};
use test_support::app::{settings_on_redis, user_turns};
use test_support::{poll, shared_redis};
use uuid::Uuid;

/// A user of no API key (authentication off).
fn owner(user_id: &str) -> Owner {
    Owner {
        api_key: None,
        user_id: user_id.to_owned(),
    }
}

/// A store on the shared Redis under a fresh key prefix.
fn store(tweak: impl FnOnce(&mut Settings)) -> (SessionStore, String) {
    let mut s = settings_on_redis(&shared_redis().url());
    tweak(&mut s);
    let store = SessionStore::connect(&s.redis, &s.session).unwrap();
    (store, s.session.key_prefix)
}

/// Waits until `id` has expired.
async fn until_expired(store: &SessionStore, id: Uuid) {
    poll::until(
        "the idle session to expire",
        Duration::from_secs(5),
        || async { store.get(id, None).await.unwrap().is_none().then_some(()) },
    )
    .await;
}

fn contents(turns: &[Turn]) -> Vec<&str> {
    turns.iter().map(|t| t.content.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_append_creates_and_later_ones_extend() {
    let (store, _) = store(|_| {});
    let id = Uuid::new_v4();
    let count = store.append(id, &user_turns(&["hi"]), None).await.unwrap();
    assert_eq!(count, None, "an unknown session is not created by accident");
    assert_eq!(
        store.get(id, None).await.unwrap().map(|s| s.session_id),
        None
    );

    let count = store
        .append(id, &user_turns(&["first"]), Some(&owner("alice")))
        .await;
    assert_eq!(count.unwrap(), Some(1));
    let count = store.append(id, &user_turns(&["second"]), None).await;
    assert_eq!(count.unwrap(), Some(2));
    let session = store.get(id, None).await.unwrap().unwrap();
    assert_eq!(session.user_id, "alice");
    assert_eq!(contents(&session.turns), ["first", "second"]);
    assert!(session.expires_at > session.updated_at);
    let (owner, recent) = store.recent(id, 1).await.unwrap().unwrap();
    assert_eq!(
        (owner, contents(&recent)),
        (self::owner("alice"), vec!["second"])
    );
    assert_eq!(store.count_active().await.unwrap(), 1);

    assert!(!store.was_deleted(id).await.unwrap());
    assert!(store.delete(id, None).await.unwrap());
    assert!(!store.delete(id, None).await.unwrap(), "already gone");
    assert!(store.was_deleted(id).await.unwrap(), "a tombstone stays");
    assert_eq!(
        store.get(id, None).await.unwrap().map(|s| s.session_id),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_capped_to_the_newest_turns() {
    let (store, _) = store(|s| s.session.max_turns = 3);
    let id = Uuid::new_v4();
    store
        .append(id, &user_turns(&["1", "2"]), Some(&owner("bob")))
        .await
        .unwrap();
    let count = store.append(id, &user_turns(&["3", "4", "5"]), None).await;
    assert_eq!(count.unwrap(), Some(3));
    let session = store.get(id, None).await.unwrap().unwrap();
    assert_eq!(contents(&session.turns), ["3", "4", "5"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_append_is_stored_whole() {
    let (store, _) = store(|s| s.session.max_turns = 10_000);
    let texts: Vec<String> = (0..9_000).map(|i| i.to_string()).collect();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let id = Uuid::new_v4();
    let count = store
        .append(id, &user_turns(&texts), Some(&owner("henry")))
        .await;
    assert_eq!(count.unwrap(), Some(9_000));
    let session = store.get(id, None).await.unwrap().unwrap();
    let stored = contents(&session.turns);
    assert_eq!((stored[0], stored[8_999]), ("0", "8999"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_expire_and_stop_counting() {
    let (store, _) = store(|s| s.session.idle_timeout_secs = 1);
    let id = Uuid::new_v4();
    store
        .append(id, &user_turns(&["a"]), Some(&owner("carol")))
        .await
        .unwrap();
    store
        .append(Uuid::new_v4(), &user_turns(&["b"]), Some(&owner("dave")))
        .await
        .unwrap();
    assert_eq!(store.count_active().await.unwrap(), 2);
    until_expired(&store, id).await;
    let late = store
        .append(id, &user_turns(&["late"]), None)
        .await
        .unwrap();
    assert_eq!(late, None, "an expired session is not revived");
    assert_eq!(store.count_active().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_keeps_a_session_alive() {
    let (store, _) = store(|s| s.session.idle_timeout_secs = 2);
    let id = Uuid::new_v4();
    store
        .append(id, &user_turns(&["hello"]), Some(&owner("erin")))
        .await
        .unwrap();
    // Three appends 0.9 s apart: 2.7 s old, never idle for 2 s.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(900)).await;
        let count = store.append(id, &user_turns(&["still here"]), None).await;
        assert!(count.unwrap().is_some(), "alive while touched");
    }
    assert!(store.get(id, None).await.unwrap().is_some());
    assert_eq!(store.count_active().await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_prune_expired_sessions_from_the_active_set() {
    let (store, prefix) = store(|s| s.session.idle_timeout_secs = 1);
    let old = Uuid::new_v4();
    store
        .append(old, &user_turns(&["hello"]), Some(&owner("old")))
        .await
        .unwrap();
    until_expired(&store, old).await;
    store
        .append(Uuid::new_v4(), &user_turns(&["hello"]), Some(&owner("new")))
        .await
        .unwrap();
    let mut redis = redis::Client::open(shared_redis().url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let members: u64 = redis::cmd("ZCARD")
        .arg(format!("{prefix}active"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(members, 1, "the expired session left the active set");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_is_only_seen_and_deleted_with_the_key_that_made_it() {
    let (store, _) = store(|_| {});
    let (mine, other) = (Some(Uuid::new_v4()), Some(Uuid::new_v4()));
    let id = Uuid::new_v4();
    let made_by = Owner {
        api_key: mine,
        user_id: "kim".to_owned(),
    };
    store
        .append(id, &user_turns(&["hello"]), Some(&made_by))
        .await
        .unwrap();
    for stranger in [other, None] {
        assert!(store.get(id, stranger).await.unwrap().is_none());
        assert!(!store.delete(id, stranger).await.unwrap(), "{stranger:?}");
    }
    let (stored, _) = store.recent(id, 5).await.unwrap().unwrap();
    assert_eq!(stored, made_by);
    assert_eq!(store.get(id, mine).await.unwrap().unwrap().user_id, "kim");
    assert!(store.delete(id, mine).await.unwrap());
    assert!(store.get(id, mine).await.unwrap().is_none());
}
