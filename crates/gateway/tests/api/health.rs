//! The gateway's `/health`: the aggregator's verdict, kept for
//! `gateway.health_cache_ms` and refreshed with one request at a time; a 503
//! verdict when the aggregator cannot be reached.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::Gateway;

/// An aggregator stand-in: answers every request, after 50 ms (so callers
/// overlap), with an `OK` verdict whose version is how many requests it
/// has had.
struct Counting(Arc<AtomicU64>);

impl Respond for Counting {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
        let verdict = format!(
            r#"{{"status":"OK","timestamp":"2026-01-01T00:00:00Z","version":"{n}","services":{{}},"checks":{{}}}}"#
        );
        ResponseTemplate::new(200)
            .insert_header("Cache-Control", "max-age=30")
            .set_body_raw(verdict, "application/health+json")
            .set_delay(Duration::from_millis(50))
    }
}

async fn counting_aggregator() -> (MockServer, Arc<AtomicU64>) {
    let server = MockServer::start().await;
    let count = Arc::new(AtomicU64::new(0));
    Mock::given(method("GET"))
        .and(path("/health"))
        .respond_with(Counting(count.clone()))
        .mount(&server)
        .await;
    (server, count)
}

async fn get_health(gw: &Gateway) -> reqwest::Response {
    gw.http
        .get(format!("{}/health", gw.url))
        .send()
        .await
        .unwrap()
}

async fn health(gw: &Gateway) -> Value {
    let response = get_health(gw).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "max-age=30");
    response.json().await.unwrap()
}

/// A gateway in front of a counting aggregator, keeping verdicts `cache_ms`.
/// (The stand-in lives as long as the returned server.)
async fn gateway_keeping_health_for(cache_ms: u64) -> (Gateway, MockServer, Arc<AtomicU64>) {
    let (aggregator, count) = counting_aggregator().await;
    let gw = Gateway::start(|s| {
        s.gateway.aggregator_url = aggregator.uri();
        s.gateway.health_cache_ms = cache_ms;
    })
    .await;
    (gw, aggregator, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_health_calls_cost_the_aggregator_one_request_per_period() {
    let (gw, _aggregator, count) = gateway_keeping_health_for(500).await;
    let answers = futures::future::join_all((0..50).map(|_| health(&gw))).await;
    assert!(answers.iter().all(|a| a["version"] == "1"), "{answers:?}");
    assert_eq!(count.load(Ordering::SeqCst), 1);

    tokio::time::sleep(Duration::from_millis(600)).await;
    // Past the period one call refreshes (the stand-in takes 50 ms); the
    // calls meanwhile get the previous answer instead of waiting.
    let refresher = health(&gw);
    let others = async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        futures::future::join_all((0..10).map(|_| health(&gw))).await
    };
    let (refreshed, others) = tokio::join!(refresher, others);
    assert_eq!(refreshed["version"], "2", "refreshed after 500 ms");
    assert!(others.iter().all(|a| a["version"] == "1"), "{others:?}");
    assert_eq!(count.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_cache_every_health_call_asks_the_aggregator() {
    let (gw, _aggregator, count) = gateway_keeping_health_for(0).await;
    for expected in 1..=3 {
        assert_eq!(health(&gw).await["version"], expected.to_string());
    }
    assert_eq!(count.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_without_an_aggregator_is_a_503_verdict() {
    let closed = test_support::free_port();
    let gw = Gateway::start(|s| {
        s.gateway.aggregator_url = format!("http://127.0.0.1:{closed}");
        s.gateway.health_details = false;
    })
    .await;
    let response = get_health(&gw).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        response.headers()["content-type"],
        "application/health+json"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ERROR");
    assert!(body.get("services").is_none(), "details are off: {body}");
}
