//! Integration tests of the session service against a real Redis: reads,
//! deletes and counts over HTTP of sessions that chat's library wrote.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use session_store::{Owner, SessionStore};
use test_support::app::{send_json, serve, settings_on_redis, user_turns};
use test_support::{TestRedis, poll, shared_redis};

struct App {
    url: String,
    http: reqwest::Client,
    /// The same Redis layout, as chat writes it.
    store: SessionStore,
}

impl App {
    fn start(redis_url: String) -> Self {
        let mut s = settings_on_redis(&redis_url);
        s.redis.timeout_ms = 500;
        let url = serve(session::build(&s).unwrap());
        Self {
            url,
            http: reqwest::Client::new(),
            store: SessionStore::connect(&s.redis, &s.session).unwrap(),
        }
    }

    /// Starts a session for `user` with `texts` as its turns, as chat does;
    /// returns its id.
    async fn new_session(&self, user: &str, texts: &[&str]) -> String {
        let id = uuid::Uuid::new_v4();
        let turns = user_turns(texts);
        let owner = Owner {
            api_key: None,
            user_id: user.to_owned(),
        };
        let stored = self.store.append(id, &turns, Some(&owner)).await.unwrap();
        assert_eq!(stored, Some(texts.len()));
        id.to_string()
    }

    async fn get(&self, id: &str) -> (StatusCode, Value) {
        send_json(self.http.get(format!("{}/sessions/{id}", self.url))).await
    }

    async fn delete(&self, id: &str) -> StatusCode {
        let url = format!("{}/sessions/{id}", self.url);
        self.http.delete(url).send().await.unwrap().status()
    }

    async fn active(&self) -> (StatusCode, Value) {
        send_json(self.http.get(format!("{}/stats", self.url))).await
    }

    async fn status_of(&self, path: &str) -> StatusCode {
        let url = format!("{}{path}", self.url);
        self.http.get(url).send().await.unwrap().status()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_count_and_delete_what_chat_wrote() {
    let app = App::start(shared_redis().url());
    let id = app.new_session("alice", &["first", "second"]).await;
    app.new_session("bob", &["other"]).await;

    let (status, session) = app.get(&id).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(session["user_id"], "alice");
    assert_eq!(session["turns"][0]["content"], "first");
    assert_eq!(session["turns"][1]["content"], "second");
    assert_eq!(app.active().await.1["active_sessions"], 2);

    assert_eq!(app.delete(&id).await, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&id).await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.delete(&id).await, StatusCode::NOT_FOUND);
    assert_eq!(app.active().await.1["active_sessions"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors() {
    let app = App::start(shared_redis().url());
    let (status, body) = app.get("not-a-uuid").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["code"], "invalid_request");
    let (status, body) = app.get("00000000-0000-4000-8000-000000000000").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "session_not_found");
    let url = format!("{}/sessions/00000000-0000-4000-8000-000000000000", app.url);
    let (status, body) = send_json(app.http.put(url)).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["error"]["code"], "method_not_allowed");
    // Writing turns is chat's, through the library: no route for it.
    let (status, body) = send_json(
        app.http
            .post(format!("{}/sessions", app.url))
            .json(&json!({"user_id": "alice"})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_is_a_clean_503_and_recovers() {
    let redis = TestRedis::start();
    let app = App::start(redis.url());
    let id = app.new_session("frank", &["hello"]).await;
    redis.stop();
    let (status, body) = app.get(&id).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"]["code"], "service_unavailable");
    assert_eq!(app.active().await.0, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        app.status_of("/readyz").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        app.status_of("/livez").await,
        StatusCode::OK,
        "liveness never depends on Redis"
    );
    redis.start_again();
    // Redis keeps nothing on disk here, so the old session is gone; the
    // service must work again without a restart.
    poll::until("reads to work again", Duration::from_secs(10), || async {
        (app.get(&id).await.0 == StatusCode::NOT_FOUND).then_some(())
    })
    .await;
    assert_eq!(app.status_of("/readyz").await, StatusCode::OK);
}

const TOKEN: &str = "an-internal-token-for-tests";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_internal_token_only_the_probes_answer_without_it() {
    let mut s = settings_on_redis(&shared_redis().url());
    s.internal.token = Some(TOKEN.into());
    let url = serve(session::build(&s).unwrap());
    let http = reqwest::Client::new();
    let id = uuid::Uuid::new_v4();
    for path in [format!("/sessions/{id}"), "/stats".to_owned()] {
        for authorization in [None, Some("Bearer wrong-token-of-some-length"), Some(TOKEN)] {
            let mut request = http.get(format!("{url}{path}"));
            if let Some(value) = authorization {
                request = request.header("authorization", value);
            }
            let (status, body) = send_json(request).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} {authorization:?}");
            assert_eq!(body["error"]["code"], "unauthorized");
        }
        let with_token = http
            .get(format!("{url}{path}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_ne!(with_token.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    for open in ["/livez", "/readyz", "/metrics"] {
        let status = http
            .get(format!("{url}{open}"))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, StatusCode::OK, "{open} stays open");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listening_beyond_loopback_without_a_token_is_refused() {
    let mut s = settings_on_redis(&shared_redis().url());
    s.session.server.host = std::net::Ipv4Addr::UNSPECIFIED.into();
    let error = match session::build(&s) {
        Ok(_) => panic!("a session service open to the network without a token"),
        Err(error) => error.to_string(),
    };
    assert!(
        error.contains("internal.token is required") && error.contains("0.0.0.0"),
        "{error}"
    );
}
