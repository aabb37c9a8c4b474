//! `GET /health` on the gateway: the health aggregator's cached verdict, so
//! `curl localhost:3001/health` works as operators expect.
//!
//! The status code, body and `Cache-Control` are the aggregator's. With
//! `gateway.health_details = false` public callers see only `status`,
//! `timestamp` and `version`. When the aggregator itself cannot be reached the
//! answer is a 503 `ERROR` verdict saying so.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use chatbot_common::upstream::Upstream;
use serde_json::{Value, json};

use crate::routes::State;

/// The media type of the verdict.
const HEALTH_JSON: &str = "application/health+json";

struct Answer {
    status: StatusCode,
    cache_control: Option<String>,
    body: Value,
}

async fn fetch(aggregator: Upstream) -> Answer {
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
    let answer = fetch(state.aggregator.clone()).await;
    let body = if state.health_details {
        answer.body
    } else {
        json!({
            "status": answer.body["status"],
            "timestamp": answer.body["timestamp"],
            "version": answer.body["version"],
        })
    };
    let mut response = HttpResponse::build(answer.status);
    response.content_type(HEALTH_JSON);
    if let Some(cache_control) = answer.cache_control {
        response.insert_header(("Cache-Control", cache_control));
    }
    response.json(body)
}
