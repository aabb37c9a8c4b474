//! `GET /health` on the gateway: the health aggregator's cached verdict, so
//! `curl localhost:3001/health` works as operators expect.
//!
//! The status code, body and `Cache-Control` are the aggregator's. With
//! `gateway.health_details = false` public callers see only `status`,
//! `timestamp` and `version`. When the aggregator itself cannot be reached the
//! answer is a 503 `ERROR` verdict saying so.
//!
//! The gateway keeps the answer for `gateway.health_cache_ms` (1 s by
//! default; 0 asks the aggregator every time), and one request at a time
//! refreshes it while the others wait for that answer: a load balancer or a
//! crowd of monitors polling `/health` thousands of times a second costs the
//! aggregator one request a second. The aggregator's checks run every
//! `aggregator.interval_secs` (30 s) anyway; the gateway's copy is at most
//! `health_cache_ms` older than the aggregator's.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{HttpResponse, web};
use chatbot_common::upstream::Upstream;
use serde_json::{Value, json};

use crate::routes::State;

/// The media type of the verdict.
const HEALTH_JSON: &str = "application/health+json";

/// The aggregator's verdict as the gateway serves it, kept for a while.
pub struct HealthRelay {
    aggregator: Upstream,
    details: bool,
    keep_for: Duration,
    kept: Mutex<Option<(Instant, Rendered)>>,
    refreshing: tokio::sync::Mutex<()>,
}

/// One answer, ready to send again.
#[derive(Clone)]
struct Rendered {
    status: StatusCode,
    cache_control: Option<String>,
    body: Bytes,
}

impl HealthRelay {
    /// Relays `aggregator`'s verdict, with or without `details`, keeping
    /// each answer for `keep_for`.
    pub fn new(aggregator: Upstream, details: bool, keep_for: Duration) -> Self {
        Self {
            aggregator,
            details,
            keep_for,
            kept: Mutex::new(None),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    fn fresh(&self) -> Option<Rendered> {
        let kept = self
            .kept
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        kept.as_ref()
            .filter(|(at, _)| at.elapsed() < self.keep_for)
            .map(|(_, rendered)| rendered.clone())
    }

    async fn answer(&self) -> Rendered {
        if let Some(rendered) = self.fresh() {
            return rendered;
        }
        let _refreshing = self.refreshing.lock().await;
        if let Some(rendered) = self.fresh() {
            return rendered;
        }
        let rendered = self.render(fetch(&self.aggregator).await);
        if !self.keep_for.is_zero() {
            let mut kept = self
                .kept
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *kept = Some((Instant::now(), rendered.clone()));
        }
        rendered
    }

    fn render(&self, answer: Answer) -> Rendered {
        let body = if self.details {
            answer.body
        } else {
            json!({
                "status": answer.body["status"],
                "timestamp": answer.body["timestamp"],
                "version": answer.body["version"],
            })
        };
        Rendered {
            status: answer.status,
            cache_control: answer.cache_control,
            body: Bytes::from(body.to_string()),
        }
    }
}

struct Answer {
    status: StatusCode,
    cache_control: Option<String>,
    body: Value,
}

async fn fetch(aggregator: &Upstream) -> Answer {
    let call = aggregator.get("/health").send().await;
    let response = match call {
        Ok(response) => response,
        Err(error) => return unreachable(&error.to_string()),
    };
    let status =
        StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let cache_control = response
        .headers()
        .get(reqwest::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match response.json::<Value>().await {
        Ok(body) if body.get("status").is_some() => Answer {
            status,
            cache_control,
            body,
        },
        _ => unreachable("the health aggregator sent an unreadable verdict"),
    }
}

fn unreachable(reason: &str) -> Answer {
    Answer {
        status: StatusCode::SERVICE_UNAVAILABLE,
        cache_control: None,
        body: json!({
            "status": "ERROR",
            "timestamp": chrono::Utc::now(),
            "version": env!("CARGO_PKG_VERSION"),
            "services": {"health-aggregator": {
                "status": "ERROR", "responseTime": 0, "required": true,
                "error": format!("the health aggregator is unreachable: {reason}"),
                "checkedAt": chrono::Utc::now()
            }},
            "checks": {}
        }),
    }
}

/// `GET /health`.
pub async fn health(state: web::Data<State>) -> HttpResponse {
    let answer = state.health.answer().await;
    let mut response = HttpResponse::build(answer.status);
    response.content_type(HEALTH_JSON);
    if let Some(cache_control) = answer.cache_control {
        response.insert_header(("Cache-Control", cache_control));
    }
    response.body(answer.body)
}
