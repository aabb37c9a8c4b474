//! Integration tests of the health aggregator: it polls real services in the
//! background and serves the cached verdict.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use test_support::app::{send_json, serve, settings};
use test_support::{TestRedis, fresh_prefix};

async fn verdict(url: &str) -> (StatusCode, Value) {
    send_json(reqwest::Client::new().get(format!("{url}/health"))).await
}

/// Polls `/health` until `status` is reported, for up to 10 s.
async fn wait_for(url: &str, status: &str) -> Value {
    for _ in 0..100 {
        let (_, body) = verdict(url).await;
        if body["status"] == status {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the verdict never became {status}: {}",
        verdict(url).await.1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verdict_follows_the_services_readiness() {
    let redis = TestRedis::start();
    let mut s = settings();
    s.redis.url = redis.url().as_str().into();
    s.redis.timeout_ms = 300;
    s.session.key_prefix = fresh_prefix();
    let session = serve(session::build(&s).unwrap());
    s.aggregator.interval_secs = 1;
    s.aggregator.timeout_secs = 2;
    s.aggregator.services = [("session".to_owned(), session)].into_iter().collect();
    let aggregator = serve(health_aggregator::build(&s).unwrap());

    let ok = wait_for(&aggregator, "OK").await;
    assert_eq!(ok["services"]["session"]["status"], "OK");
    assert_eq!(verdict(&aggregator).await.0, StatusCode::OK);

    redis.stop();
    let error = wait_for(&aggregator, "ERROR").await;
    assert_eq!(error["services"]["session"]["status"], "ERROR");
    assert!(
        error["services"]["session"]["error"]
            .as_str()
            .unwrap()
            .contains("503")
    );
    assert_eq!(
        verdict(&aggregator).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );

    redis.start_again();
    wait_for(&aggregator, "OK").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_service_makes_the_verdict_error() {
    let mut s = settings();
    s.aggregator.interval_secs = 1;
    let closed = format!("http://127.0.0.1:{}", test_support::free_port());
    s.aggregator.services = [("chat".to_owned(), closed)].into_iter().collect();
    let aggregator = serve(health_aggregator::build(&s).unwrap());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, body) = verdict(&aggregator).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["services"]["chat"]["status"], "ERROR");
    assert!(
        body["services"]["chat"]["error"]
            .as_str()
            .unwrap()
            .contains("unreachable")
    );
}
