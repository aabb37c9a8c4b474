//! API keys and rate limits on the public API: a gateway with `auth` on in
//! front of the real services, keys made in the real `api_keys` table.

use std::time::Duration;

use access::{KeyStore, Limits, Token};
use chatbot_common::config::Settings;
use reqwest::StatusCode;
use serde_json::json;
use test_support::app::{backed_settings, serve};
use test_support::{TestRedis, shared_redis};

/// A gateway with keys on, limited to `rpm` a minute by default, and the
/// key table it reads.
struct Guarded {
    url: String,
    keys: KeyStore,
    db_url: String,
    http: reqwest::Client,
    _sim: ollama_sim::SimServer,
}

impl Guarded {
    async fn start(redis_url: &str, rpm: u32) -> Self {
        let (mut s, sim) = backed_settings(redis_url).await;
        s.gateway.session_url = serve(session::build(&s).unwrap());
        s.gateway.chat_url = serve(chat::build(&s).await.unwrap());
        enable(&mut s, rpm);
        let keys = KeyStore::new(chatbot_common::pools::postgres(&s.database).unwrap());
        Self {
            url: serve(gateway::build(&s).unwrap()),
            keys,
            db_url: s.database.url.expose().to_owned(),
            http: reqwest::Client::new(),
            _sim: sim,
        }
    }

    /// A new key, once the gateway has loaded it.
    async fn key(&self, name: &str, limits: Limits) -> Token {
        let (_, token) = self.keys.create(name, false, limits).await.unwrap();
        let bearer = format!("Bearer {}", token.expose());
        test_support::poll::until(
            "the gateway to load the new key",
            Duration::from_secs(5),
            || {
                let request = self
                    .session(uuid::Uuid::new_v4())
                    .header("authorization", &bearer);
                async move {
                    (request.send().await.unwrap().status() != StatusCode::UNAUTHORIZED)
                        .then_some(())
                }
            },
        )
        .await;
        token
    }

    fn session(&self, id: uuid::Uuid) -> reqwest::RequestBuilder {
        self.http.get(format!("{}/api/sessions/{id}", self.url))
    }

    /// Every public API route, as a request without credentials.
    fn api_routes(&self) -> Vec<reqwest::RequestBuilder> {
        let id = uuid::Uuid::new_v4();
        vec![
            self.http
                .post(format!("{}/api/chat", self.url))
                .json(&json!({"user_id": "u", "message": "hello"})),
            self.session(id),
            self.http.delete(format!("{}/api/sessions/{id}", self.url)),
        ]
    }
}

fn enable(s: &mut Settings, rpm: u32) {
    s.auth.enabled = true;
    s.auth.refresh_secs = 1;
    s.limits.requests_per_minute = rpm;
}

async fn code_of(response: reqwest::Response) -> String {
    let body: serde_json::Value = response.json().await.unwrap();
    body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_route_wants_a_valid_key() {
    let gw = Guarded::start(&shared_redis().url(), 1000).await;
    let revoked = gw.key("soon-revoked", Limits::default()).await;
    gw.keys.revoke("soon-revoked").await.unwrap().unwrap();
    let unknown = format!("cbk_{}", "x".repeat(43));
    let credentials = [
        (None, "Bearer realm=\"chatbot\""),
        (
            Some("Bearer".to_owned()),
            "Bearer realm=\"chatbot\", error=\"invalid_token\"",
        ),
        (
            Some("Basic dXNlcjpwYXNz".to_owned()),
            "Bearer realm=\"chatbot\", error=\"invalid_token\"",
        ),
        (
            Some(format!("Bearer {unknown}")),
            "Bearer realm=\"chatbot\", error=\"invalid_token\"",
        ),
        (
            Some(format!("Bearer {}", revoked.expose())),
            "Bearer realm=\"chatbot\", error=\"invalid_token\"",
        ),
    ];
    test_support::poll::until(
        "the revocation to reach the gateway (auth.refresh_secs)",
        Duration::from_secs(5),
        || async {
            let request = gw
                .session(uuid::Uuid::new_v4())
                .bearer_auth(revoked.expose());
            (request.send().await.unwrap().status() == StatusCode::UNAUTHORIZED).then_some(())
        },
    )
    .await;
    for (authorization, challenge) in &credentials {
        for request in gw.api_routes() {
            let request = match authorization {
                Some(value) => request.header("authorization", value),
                None => request,
            };
            let response = request.send().await.unwrap();
            let route = response.url().path().to_owned();
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "{route} with {authorization:?}"
            );
            assert_eq!(
                response.headers()["www-authenticate"],
                *challenge,
                "{route}"
            );
            assert_eq!(code_of(response).await, "unauthorized");
        }
    }
    for open in ["/health", "/livez", "/readyz", "/openapi.json"] {
        let response = gw
            .http
            .get(format!("{}{open}", gw.url))
            .send()
            .await
            .unwrap();
        assert_ne!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{open} stays open"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_key_chats_and_sees_its_limits() {
    let gw = Guarded::start(&shared_redis().url(), 1000).await;
    let token = gw.key("app", Limits::default()).await;
    let response = gw
        .http
        .post(format!("{}/api/chat", gw.url))
        .bearer_auth(token.expose())
        .json(&json!({"user_id": "u", "message": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers();
    assert_eq!(headers["ratelimit-limit"], "1000");
    let remaining: u32 = headers["ratelimit-remaining"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((990..1000).contains(&remaining), "{remaining}");
    assert!(headers.contains_key("ratelimit-reset"));
}

/// Sends `n` session reads at once with `token`; returns the rejected ones'
/// responses and checks the allowed ones carry the headers.
async fn burst(gw: &Guarded, token: &Token, n: usize) -> Vec<reqwest::Response> {
    let requests = (0..n).map(|_| {
        gw.session(uuid::Uuid::new_v4())
            .bearer_auth(token.expose())
            .send()
    });
    let mut rejected = Vec::new();
    for response in futures::future::join_all(requests).await {
        let response = response.unwrap();
        assert!(response.headers().contains_key("ratelimit-remaining"));
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            rejected.push(response);
        }
    }
    rejected
}

async fn assert_rejections(rejected: Vec<reqwest::Response>, limit: &str) {
    assert_eq!(rejected.len(), 10, "exactly the 10 over the limit");
    for response in rejected {
        let headers = response.headers();
        assert_eq!(headers["ratelimit-limit"], limit);
        assert_eq!(headers["ratelimit-remaining"], "0");
        let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
        assert_eq!(code_of(response).await, "rate_limited");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_over_the_limit_is_refused_with_429() {
    let gw = Guarded::start(&shared_redis().url(), 1000).await;
    // The key's own limit wins over the default; the probe that saw the key
    // loaded used one request of it.
    let token = gw
        .key(
            "bursty",
            Limits {
                requests_per_minute: Some(21),
                ..Limits::default()
            },
        )
        .await;
    assert_rejections(burst(&gw, &token, 30).await, "21").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_each_gateway_limits_on_its_own() {
    let redis = TestRedis::start();
    let gw = Guarded::start(&redis.url(), 21).await;
    redis.stop();
    let token = gw.key("local", Limits::default()).await;
    assert_rejections(burst(&gw, &token, 30).await, "21").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_keys_session_is_not_found() {
    let gw = Guarded::start(&shared_redis().url(), 1000).await;
    let mine = gw.key("mine", Limits::default()).await;
    let theirs = gw.key("theirs", Limits::default()).await;
    let chat = |token: &Token, body: serde_json::Value| {
        gw.http
            .post(format!("{}/api/chat", gw.url))
            .bearer_auth(token.expose())
            .json(&body)
            .send()
    };
    let first: serde_json::Value = chat(&mine, json!({"user_id": "u", "message": "hello"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id: uuid::Uuid = first["session_id"].as_str().unwrap().parse().unwrap();

    let read = gw
        .session(id)
        .bearer_auth(theirs.expose())
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::NOT_FOUND);
    assert_eq!(code_of(read).await, "session_not_found");
    let continued = chat(
        &theirs,
        json!({"user_id": "u", "message": "hi", "session_id": id}),
    )
    .await
    .unwrap();
    assert_eq!(continued.status(), StatusCode::NOT_FOUND);
    let delete = |token: &Token| {
        gw.http
            .delete(format!("{}/api/sessions/{id}", gw.url))
            .bearer_auth(token.expose())
            .send()
    };
    assert_eq!(
        delete(&theirs).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );

    let own = gw
        .session(id)
        .bearer_auth(mine.expose())
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), StatusCode::OK, "the owner still has it");
    assert_eq!(
        delete(&mine).await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_messages_record_the_key() {
    let gw = Guarded::start(&shared_redis().url(), 1000).await;
    let token = gw.key("recorded", Limits::default()).await;
    let answer: serde_json::Value = gw
        .http
        .post(format!("{}/api/chat", gw.url))
        .bearer_auth(token.expose())
        .json(&json!({"user_id": "u", "message": "hello"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = gw
        .keys
        .list()
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.name == "recorded")
        .unwrap();
    let db = test_support::app::connect(&gw.db_url).await;
    let message_id: uuid::Uuid = answer["message_id"].as_str().unwrap().parse().unwrap();
    let stored = test_support::poll::until("the row to be written", Duration::from_secs(5), || {
        let db = &db;
        async move {
            db.query_opt(
                "SELECT api_key_id FROM messages WHERE id = $1",
                &[&message_id],
            )
            .await
            .unwrap()
            .map(|row| row.get::<_, Option<uuid::Uuid>>(0))
        }
    })
    .await;
    assert_eq!(stored, Some(key.id));
}
