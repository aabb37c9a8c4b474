//! Integration tests of the session service against a real Redis.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use test_support::app::{send_json, serve, settings};
use test_support::{TestRedis, fresh_prefix, shared_redis};

struct App {
    url: String,
    http: reqwest::Client,
}

impl App {
    fn start(redis_url: String, tweak: impl FnOnce(&mut chatbot_common::config::Settings)) -> Self {
        let mut s = settings();
        s.redis.url = redis_url.as_str().into();
        s.redis.timeout_ms = 500;
        s.session.key_prefix = fresh_prefix();
        tweak(&mut s);
        let url = serve(session::build(&s).unwrap());
        Self {
            url,
            http: reqwest::Client::new(),
        }
    }

    async fn create(&self, user: &str) -> (StatusCode, Value) {
        send_json(
            self.http
                .post(format!("{}/sessions", self.url))
                .json(&json!({"user_id": user})),
        )
        .await
    }

    async fn get(&self, id: &str) -> (StatusCode, Value) {
        send_json(self.http.get(format!("{}/sessions/{id}", self.url))).await
    }

    async fn append(&self, id: &str, texts: &[&str]) -> (StatusCode, Value) {
        let turns: Vec<Value> = texts
            .iter()
            .map(|t| json!({"role": "user", "content": t, "created_at": "2026-01-01T00:00:00Z"}))
            .collect();
        send_json(
            self.http
                .post(format!("{}/sessions/{id}/turns", self.url))
                .json(&json!({ "turns": turns })),
        )
        .await
    }

    /// Creates a session for `user` and returns its id.
    async fn new_session(&self, user: &str) -> String {
        let (status, body) = self.create(user).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["session_id"].as_str().unwrap().to_owned()
    }

    async fn delete(&self, id: &str) -> StatusCode {
        let url = format!("{}/sessions/{id}", self.url);
        self.http.delete(url).send().await.unwrap().status()
    }

    async fn active(&self) -> u64 {
        let (_, body) = send_json(self.http.get(format!("{}/stats", self.url))).await;
        body["active_sessions"].as_u64().unwrap()
    }
}

/// The contents of a session's turns, oldest first.
fn contents(session: &Value) -> Vec<&str> {
    session["turns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["content"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_append_read_delete() {
    let app = App::start(shared_redis().url(), |_| {});
    let (status, created) = app.create("alice").await;
    assert_eq!(status, StatusCode::CREATED);
    let id = created["session_id"].as_str().unwrap().to_owned();
    assert_eq!(created["turns"], json!([]));

    let (status, body) = app.append(&id, &["first", "second"]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["turn_count"], 2);

    let (status, session) = app.get(&id).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(session["user_id"], "alice");
    let contents = contents(&session);
    assert_eq!(contents, ["first", "second"]);

    assert_eq!(app.delete(&id).await, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&id).await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.delete(&id).await, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_capped_to_the_newest_turns() {
    let app = App::start(shared_redis().url(), |s| s.session.max_turns = 3);
    let id = app.new_session("bob").await;
    app.append(&id, &["1", "2"]).await;
    let (_, body) = app.append(&id, &["3", "4", "5"]).await;
    assert_eq!(body["turn_count"], 3);
    let session = app.get(&id).await.1;
    let contents = contents(&session);
    assert_eq!(contents, ["3", "4", "5"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_expire_and_stop_counting() {
    let app = App::start(shared_redis().url(), |s| s.session.idle_timeout_secs = 1);
    let id = app.new_session("carol").await;
    app.create("dave").await;
    assert_eq!(app.active().await, 2);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(app.get(&id).await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.append(&id, &["late"]).await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.active().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_keeps_a_session_alive() {
    let app = App::start(shared_redis().url(), |s| s.session.idle_timeout_secs = 2);
    let id = app.new_session("erin").await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(900)).await;
        assert_eq!(app.append(&id, &["still here"]).await.0, StatusCode::OK);
    }
    assert_eq!(
        app.get(&id).await.0,
        StatusCode::OK,
        "2.7 s old but touched every 0.9 s"
    );
    assert_eq!(app.active().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors() {
    let app = App::start(shared_redis().url(), |_| {});
    let (status, body) = app.get("not-a-uuid").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["code"], "invalid_request");
    let (status, body) = app.create("has space").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("user_id")
    );
    let (status, body) =
        send_json(app.http.post(format!("{}/sessions", app.url)).body("{oops")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "malformed_json");
    let (status, body) = app.get("00000000-0000-4000-8000-000000000000").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "session_not_found");
    let (status, body) = send_json(app.http.put(format!("{}/sessions", app.url))).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["error"]["code"], "method_not_allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_is_a_clean_503_and_recovers() {
    let redis = TestRedis::start();
    let app = App::start(redis.url(), |_| {});
    let id = app.new_session("frank").await;
    redis.stop();
    let (status, body) = app.get(&id).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"]["code"], "service_unavailable");
    let ready = app
        .http
        .get(format!("{}/readyz", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let live = app
        .http
        .get(format!("{}/livez", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        live.status(),
        StatusCode::OK,
        "liveness never depends on Redis"
    );
    redis.start_again();
    // Redis keeps nothing on disk here, so the old session is gone; the
    // service must work again without a restart.
    let mut status = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..20 {
        status = app.create("frank").await.0;
        if status == StatusCode::CREATED {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status, StatusCode::CREATED);
    let ready = app
        .http
        .get(format!("{}/readyz", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appending_with_create_for_starts_a_session_in_one_call() {
    let app = App::start(shared_redis().url(), |_| {});
    let id = "6f1c2a8e-0000-4000-8000-000000000001";
    let turn =
        json!({"role": "user", "content": "first words", "created_at": "2026-01-01T00:00:00Z"});
    let url = format!("{}/sessions/{id}/turns", app.url);
    let (status, body) = send_json(
        app.http
            .post(&url)
            .json(&json!({"turns": [turn], "create_for": "grace"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["turn_count"], 1);
    let (status, session) = app.get(id).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(session["user_id"], "grace");
    assert_eq!(session["turns"][0]["content"], "first words");
    assert_eq!(app.active().await, 1);
    let (status, _) = send_json(
        app.http
            .post(&url)
            .json(&json!({"turns": [], "create_for": "bad name"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_append_is_stored_whole() {
    let app = App::start(shared_redis().url(), |s| s.session.max_turns = 10_000);
    let id = app.new_session("henry").await;
    let texts: Vec<String> = (0..9_000).map(|i| i.to_string()).collect();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let (status, body) = app.append(&id, &texts).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["turn_count"], 9_000);
    let session = app.get(&id).await.1;
    let stored = contents(&session);
    assert_eq!((stored[0], stored[8_999]), ("0", "8999"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_prune_expired_sessions_from_the_active_set() {
    use chatbot_common::api::{Role, Turn};
    let mut s = settings();
    s.redis.url = shared_redis().url().as_str().into();
    s.session.key_prefix = fresh_prefix();
    s.session.idle_timeout_secs = 1;
    let store = session::store::SessionStore::connect(&s.redis, &s.session).unwrap();
    let turn = Turn {
        role: Role::User,
        content: "hello".into(),
        message_id: None,
        created_at: chrono::Utc::now(),
    };
    let append = |user| {
        store.append(
            uuid::Uuid::new_v4(),
            std::slice::from_ref(&turn),
            Some(user),
        )
    };
    append("old").await.unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    append("new").await.unwrap();
    let mut redis = redis::Client::open(shared_redis().url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let members: u64 = redis::cmd("ZCARD")
        .arg(format!("{}active", s.session.key_prefix))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(members, 1, "the expired session left the active set");
}
