//! Integration tests of the health aggregator against real PostgreSQL and
//! Redis, the Ollama simulator, the n8n stand-in and a real session service.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use chatbot_common::config::Settings;
use reqwest::StatusCode;
use serde_json::Value;
use test_support::app::{backed_settings, send_json, serve};
use test_support::{N8nStandIn, TestRedis};

struct Env {
    url: String,
    redis: TestRedis,
    n8n: N8nStandIn,
    sim: ollama_sim::SimServer,
    http: reqwest::Client,
}

impl Env {
    /// An aggregator polling every `interval_secs` over its own Redis, a
    /// session service on that Redis, the simulator and the n8n stand-in.
    async fn start(interval_secs: u64, tweak: impl FnOnce(&mut Settings)) -> Self {
        let redis = TestRedis::start();
        let n8n = N8nStandIn::start().await;
        let (mut s, sim) = backed_settings(&redis.url()).await;
        s.redis.timeout_ms = 300;
        s.n8n.health_url = n8n.health_url();
        s.aggregator.interval_secs = interval_secs;
        s.aggregator.timeout_secs = 2;
        s.aggregator.disk_warn_free_percent = 0.0;
        s.aggregator.disk_fail_free_percent = 0.0;
        s.aggregator.memory_warn_available_percent = 0.0;
        s.aggregator.memory_fail_available_percent = 0.0;
        let session = serve(session::build(&s).unwrap());
        s.aggregator.services = [("session".to_owned(), session)].into_iter().collect();
        tweak(&mut s);
        let url = serve(health_aggregator::build(&s).unwrap());
        Self {
            url,
            redis,
            n8n,
            sim,
            http: reqwest::Client::new(),
        }
    }

    async fn health(&self) -> (StatusCode, Value) {
        send_json(self.http.get(format!("{}/health", self.url))).await
    }

    /// Polls until the verdict is `status`, for up to 10 s.
    async fn wait_for(&self, status: &str) -> Value {
        self.wait_until(|v| v["status"] == status).await
    }

    /// Polls until `done` holds for the verdict, for up to 10 s.
    async fn wait_until(&self, done: impl Fn(&Value) -> bool) -> Value {
        test_support::poll::until(
            "the verdict to get there",
            Duration::from_secs(10),
            || async {
                let verdict = self.health().await.1;
                done(&verdict).then_some(verdict)
            },
        )
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_is_an_error_and_n8n_down_a_warning() {
    let env = Env::start(1, |_| {}).await;
    let ok = env.wait_for("OK").await;
    for component in [
        "database", "redis", "ollama", "n8n", "disk", "memory", "session",
    ] {
        assert_eq!(
            ok["services"][component]["status"], "OK",
            "{component}: {ok}"
        );
    }
    assert_eq!(ok["services"]["n8n"]["required"], false);
    assert_eq!(ok["checks"]["redis:responseTime"][0]["observedUnit"], "ms");
    assert_eq!(ok["checks"]["disk:free"][0]["observedUnit"], "percent");
    let response = env
        .http
        .get(format!("{}/health", env.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "application/health+json"
    );
    assert_eq!(response.headers()["cache-control"], "max-age=1");

    env.redis.stop();
    let error = env.wait_for("ERROR").await;
    assert_eq!(error["services"]["redis"]["status"], "ERROR");
    assert!(error["services"]["redis"]["error"].as_str().is_some());
    assert_eq!(env.health().await.0, StatusCode::SERVICE_UNAVAILABLE);
    let live = env
        .http
        .get(format!("{}/livez", env.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        live.status(),
        StatusCode::OK,
        "liveness never depends on a component"
    );
    env.redis.start_again();
    env.wait_for("OK").await;

    env.n8n.set_healthy(false);
    let warn = env.wait_for("WARN").await;
    assert_eq!(warn["services"]["n8n"]["status"], "ERROR");
    assert_eq!(
        env.health().await.0,
        StatusCode::OK,
        "an optional component only warns"
    );
    env.n8n.set_healthy(true);
    env.wait_for("OK").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_health_calls_checks_nothing_more() {
    let env = Env::start(30, |_| {}).await;
    env.wait_for("OK").await;
    let before = env.sim.sim().stats().requests.tags;
    let calls = (0..100).map(|_| env.health());
    let answers = futures::future::join_all(calls).await;
    assert!(answers.iter().all(|(status, _)| *status == StatusCode::OK));
    assert_eq!(
        env.sim.sim().stats().requests.tags,
        before,
        "no /health call reached Ollama"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_model_and_low_disk_are_reported() {
    let env = Env::start(1, |s| {
        s.chat.model = "no-such-model:7b".into();
        s.aggregator.disk_warn_free_percent = 100.0;
    })
    .await;
    let verdict = env
        .wait_until(|v| {
            v["services"]["ollama"]["error"]
                .as_str()
                .is_some_and(|e| e.contains("pull"))
        })
        .await;
    assert_eq!(verdict["status"], "ERROR");
    let ollama = verdict["services"]["ollama"]["error"].as_str().unwrap();
    assert!(
        ollama.contains("'no-such-model:7b' is not available"),
        "{ollama}"
    );
    assert_eq!(verdict["services"]["disk"]["status"], "WARN");
    assert_eq!(verdict["checks"]["disk:free"][0]["status"], "warn");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_two_backends_down_is_a_warning_both_an_error() {
    let second = ollama_sim::spawn(ollama_sim::SimConfig::default())
        .await
        .unwrap();
    let second_url = second.url();
    let env = Env::start(1, |s| {
        s.ollama.urls = vec![s.ollama.url.clone(), second_url];
    })
    .await;
    let verdict = env.wait_for("OK").await;
    assert_eq!(verdict["services"]["ollama-2"]["status"], "OK");
    second.stop().await;
    let verdict = env.wait_for("WARN").await;
    assert_eq!(verdict["services"]["ollama"]["status"], "OK", "one serves");
    assert_eq!(verdict["services"]["ollama-1"]["status"], "OK");
    assert_eq!(
        verdict["services"]["ollama-2"]["status"], "ERROR",
        "the backend itself is down; it is optional, so the verdict is WARN"
    );
    env.sim
        .sim()
        .update_config(|c| c.models = vec!["other:1b".into()])
        .unwrap();
    let verdict = env.wait_for("ERROR").await;
    assert_eq!(
        verdict["services"]["ollama"]["status"], "ERROR",
        "none serves the model"
    );
}
