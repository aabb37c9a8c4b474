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
    sim: ollama_sim::SimServer,
}

impl Guarded {
    async fn start(redis_url: &str, rpm: u32) -> Self {
        Self::start_with(redis_url, rpm, |_| {}).await
    }

    /// As [`Guarded::start`], then `tweak` the gateway's settings.
    async fn start_with(redis_url: &str, rpm: u32, tweak: impl FnOnce(&mut Settings)) -> Self {
        let (mut s, sim) = backed_settings(redis_url).await;
        // As deployed: chat and session want the internal token.
        s.internal.token = Some(INTERNAL_TOKEN.into());
        s.gateway.session_url = serve(session::build(&s).unwrap());
        s.gateway.chat_url = serve(chat::build(&s).await.unwrap());
        enable(&mut s, rpm);
        tweak(&mut s);
        let keys = KeyStore::new(chatbot_common::pools::postgres(&s.database).unwrap());
        Self {
            url: serve(gateway::build(&s).unwrap()),
            keys,
            db_url: s.database.url.expose().to_owned(),
            http: reqwest::Client::new(),
            sim,
        }
    }

    /// A new key, once the gateway has loaded it.
    async fn key(&self, name: &str, limits: Limits) -> Token {
        self.key_with(name, false, limits).await
    }

    /// A new key, admin or not, once the gateway has loaded it.
    async fn key_with(&self, name: &str, admin: bool, limits: Limits) -> Token {
        let (_, token) = self.keys.create(name, admin, limits).await.unwrap();
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

    /// `POST /api/chat` with `body`, sent with `token`.
    fn chat(&self, token: &Token, body: serde_json::Value) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}/api/chat", self.url))
            .bearer_auth(token.expose())
            .json(&body)
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

/// The token between the services in these tests.
const INTERNAL_TOKEN: &str = "internal-token-of-the-auth-tests";

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
        .chat(&token, json!({"user_id": "u", "message": "hello"}))
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
    let chat = |token: &Token, body: serde_json::Value| gw.chat(token, body).send();
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
        .chat(&token, json!({"user_id": "u", "message": "hello"}))
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_details_are_for_admin_keys_only() {
    let aggregator = wiremock::MockServer::start().await;
    let verdict = json!({"status": "OK", "timestamp": "2026-12-01T00:00:00Z", "version": "1",
        "services": {"redis": {"status": "OK", "responseTime": 1.0, "required": true,
            "checkedAt": "2026-12-01T00:00:00Z"}}, "checks": {}});
    wiremock::Mock::given(wiremock::matchers::path("/health"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(verdict))
        .mount(&aggregator)
        .await;
    let (mut s, sim) = backed_settings(&shared_redis().url()).await;
    s.internal.token = Some(INTERNAL_TOKEN.into());
    s.gateway.session_url = serve(session::build(&s).unwrap());
    s.gateway.chat_url = serve(chat::build(&s).await.unwrap());
    s.gateway.aggregator_url = aggregator.uri();
    enable(&mut s, 1000);
    let gw = Guarded {
        url: serve(gateway::build(&s).unwrap()),
        keys: KeyStore::new(chatbot_common::pools::postgres(&s.database).unwrap()),
        db_url: s.database.url.expose().to_owned(),
        http: reqwest::Client::new(),
        sim,
    };
    let admin = gw.key_with("admin", true, Limits::default()).await;
    let plain = gw.key("plain", Limits::default()).await;
    let health = |token: Option<&Token>| {
        let request = gw.http.get(format!("{}/health", gw.url));
        let request = match token {
            Some(token) => request.bearer_auth(token.expose()),
            None => request,
        };
        async move {
            request
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    let full = health(Some(&admin)).await;
    assert_eq!(full["services"]["redis"]["status"], "OK", "{full}");
    for summary in [health(None).await, health(Some(&plain)).await] {
        assert_eq!(summary["status"], "OK");
        assert!(summary.get("services").is_none(), "{summary}");
    }
}

const PAGE: &str = "https://app.example.com";

fn preflight(gw: &Guarded, origin: &str) -> reqwest::RequestBuilder {
    gw.http
        .request(reqwest::Method::OPTIONS, format!("{}/api/chat", gw.url))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_on_allowed_origins_pass_cors_without_a_key_for_the_preflight() {
    let gw = Guarded::start_with(&shared_redis().url(), 1000, |s| {
        s.gateway.cors.allowed_origins = vec![PAGE.to_owned()];
    })
    .await;
    let token = gw.key("browser-app", Limits::default()).await;

    let answer = preflight(&gw, PAGE).send().await.unwrap();
    assert_eq!(
        answer.status(),
        StatusCode::OK,
        "no key needed for a preflight"
    );
    let headers = answer.headers();
    assert_eq!(headers["access-control-allow-origin"], PAGE);
    let methods = headers["access-control-allow-methods"].to_str().unwrap();
    assert!(methods.contains("POST"), "{methods}");
    let allowed = headers["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(
        allowed.contains("authorization") && allowed.contains("content-type"),
        "{allowed}"
    );

    let refused = preflight(&gw, "https://evil.example.net")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(code_of(refused).await, "cors_rejected");

    let chat = gw
        .http
        .post(format!("{}/api/chat", gw.url))
        .header("origin", PAGE)
        .bearer_auth(token.expose())
        .json(&json!({"user_id": "u", "message": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(chat.status(), StatusCode::OK);
    assert_eq!(chat.headers()["access-control-allow-origin"], PAGE);
    let exposed = chat.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(exposed.contains("ratelimit-remaining"), "{exposed}");
    let unauthenticated = gw
        .http
        .post(format!("{}/api/chat", gw.url))
        .header("origin", PAGE)
        .json(&json!({"user_id": "u", "message": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        unauthenticated.headers()["access-control-allow-origin"],
        PAGE,
        "the page can read why it was refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_allowed_origins_there_is_no_cross_origin_access() {
    let gw = Guarded::start(&shared_redis().url(), 1000).await;
    let answer = preflight(&gw, PAGE).send().await.unwrap();
    // An OPTIONS like any other request: without a key, refused.
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    assert!(!answer.headers().contains_key("access-control-allow-origin"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_has_only_so_many_streams_at_once() {
    let gw = Guarded::start_with(&shared_redis().url(), 1000, |s| {
        s.limits.concurrent_streams = 2;
    })
    .await;
    // Slow tokens: a stream stays open for seconds after its head arrives.
    gw.sim
        .sim()
        .update_config(|c| {
            c.tokens_per_sec = 4.0;
            c.reply_tokens = 20;
        })
        .unwrap();
    let token = gw.key("streamer", Limits::default()).await;
    let stream = || {
        gw.chat(
            &token,
            json!({"user_id": "u", "message": "hello", "stream": true}),
        )
        .send()
    };
    let first = stream().await.unwrap();
    let second = stream().await.unwrap();
    assert_eq!(
        (first.status(), second.status()),
        (StatusCode::OK, StatusCode::OK)
    );
    let third = stream().await.unwrap();
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(third.headers()["retry-after"], "1");
    assert_eq!(code_of(third).await, "rate_limited");

    // A client that hangs up frees its slot.
    drop(first);
    test_support::poll::until("the slot to be freed", Duration::from_secs(5), || async {
        let again = stream().await.unwrap();
        (again.status() == StatusCode::OK).then_some(())
    })
    .await;
    gw.sim
        .sim()
        .update_config(|c| c.tokens_per_sec = 1000.0)
        .unwrap();
    let json = gw.chat(&token, json!({"user_id": "u", "message": "hello"}));
    assert_ne!(
        json.send().await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS,
        "answers that are not streamed take no slot"
    );
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn until_the_keys_are_loaded_requests_wait_rather_than_fail_with_401() {
    let gw = Guarded::start_with(&shared_redis().url(), 1000, |s| {
        // The gateway's key table is unreachable; chat and session are fine.
        let port = test_support::free_port();
        s.database.url = format!("postgres://postgres@127.0.0.1:{port}/none")
            .as_str()
            .into();
        s.database.acquire_timeout_ms = 200;
    })
    .await;
    let key = format!("Bearer cbk_{}", "k".repeat(43));
    let answer = gw
        .session(uuid::Uuid::new_v4())
        .header("authorization", key)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.headers()["retry-after"], "1");
    assert_eq!(code_of(answer).await, "service_unavailable");
    let ready = gw
        .http
        .get(format!("{}/readyz", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let report: serde_json::Value = ready.json().await.unwrap();
    assert!(report.to_string().contains("api_keys"), "{report}");
}
