//! The gateway's `/health` keeps the aggregator's verdict for
//! `gateway.health_cache_ms` and refreshes it with one request at a time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::Gateway;

/// An aggregator stand-in: answers every request with an `OK` verdict that
/// says how many requests it has had, after 50 ms (so callers overlap).
async fn counting_aggregator() -> (String, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicU64::new(0));
    let counter = count.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(read) => request.extend_from_slice(&buf[..read]),
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                let body = format!(r#"{{"status":"OK","version":"test","requests":{n}}}"#);
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/health+json\r\n\
                     Cache-Control: max-age=30\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    (url, count)
}

async fn health(gw: &Gateway) -> Value {
    let response = gw
        .http
        .get(format!("{}/health", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "max-age=30");
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_health_calls_cost_the_aggregator_one_request_per_period() {
    let (aggregator, count) = counting_aggregator().await;
    let gw = Gateway::start(|s| {
        s.gateway.aggregator_url = aggregator;
        s.gateway.health_cache_ms = 500;
    })
    .await;
    let answers = futures::future::join_all((0..50).map(|_| health(&gw))).await;
    assert!(answers.iter().all(|a| a["requests"] == 1), "{answers:?}");
    assert_eq!(count.load(Ordering::SeqCst), 1);

    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(health(&gw).await["requests"], 2, "refreshed after 500 ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_cache_every_health_call_asks_the_aggregator() {
    let (aggregator, count) = counting_aggregator().await;
    let gw = Gateway::start(|s| {
        s.gateway.aggregator_url = aggregator;
        s.gateway.health_cache_ms = 0;
    })
    .await;
    for expected in 1..=3 {
        assert_eq!(health(&gw).await["requests"], expected);
    }
    assert_eq!(count.load(Ordering::SeqCst), 3);
}
