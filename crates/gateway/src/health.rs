//! `GET /health` on the gateway: the health aggregator's cached verdict, so
//! `curl localhost:3001/health` works as operators expect.
//!
//! The status code, body and `Cache-Control` are the aggregator's. Who sees
//! the per-component details (`services`, `checks`):
//!
//! - with API keys on, callers presenting an admin key
//!   (`chatbot-ops keys create --admin`); everyone else sees only `status`,
//!   `timestamp` and `version`;
//! - with API keys off, everyone;
//! - with `gateway.health_details = false`, nobody (the aggregator's own
//!   port still serves them to the internal network).
//!
//! When the aggregator itself cannot be reached the answer is a 503 `ERROR`
//! verdict saying so.
//!
//! The gateway keeps the answer for `gateway.health_cache_ms` (1 s by
//! default; 0 asks the aggregator every time). Once it is older, one request
//! refreshes it while the others get the previous answer, so a load balancer
//! or a crowd of monitors polling `/health` thousands of times a second costs
//! the aggregator one request a second and never queues behind it. The
//! aggregator's checks run every `aggregator.interval_secs` (30 s) anyway.
//! An aggregator that does not answer within 2 s is reported unreachable.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use chatbot_common::upstream::Upstream;
use chatbot_common::verdict::{MEDIA_TYPE, Summary, Verdict};

use crate::access::Access;
use crate::routes::State;

/// How long the aggregator may take: it answers from memory, so slower
/// means it is in trouble, and `/health` says so instead of hanging.
const FETCH_TIMEOUT: Duration = Duration::from_secs(2);

/// The aggregator's verdict as the gateway serves it, kept for a while.
pub struct HealthRelay {
    aggregator: Upstream,
    details: bool,
    keep_for: Duration,
    kept: Mutex<Option<(Instant, Rendered)>>,
    refreshing: tokio::sync::Mutex<()>,
}

/// One answer, ready to send again, with and without the details.
#[derive(Clone)]
struct Rendered {
    status: StatusCode,
    cache_control: Option<String>,
    full: Bytes,
    summary: Bytes,
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

    /// The kept answer, and whether it is still fresh.
    fn kept(&self) -> Option<(Rendered, bool)> {
        let kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        kept.as_ref()
            .map(|(at, rendered)| (rendered.clone(), at.elapsed() < self.keep_for))
    }

    async fn answer(&self) -> Rendered {
        if self.keep_for.is_zero() {
            return self.render(fetch(&self.aggregator).await);
        }
        let stale = match self.kept() {
            Some((rendered, true)) => return rendered,
            Some((rendered, false)) => Some(rendered),
            None => None,
        };
        // One caller refreshes; meanwhile the others get the previous answer
        // (or, on the very first call, wait for this one).
        let _refreshing = match (self.refreshing.try_lock(), stale) {
            (Ok(guard), _) => guard,
            (Err(_), Some(stale)) => return stale,
            (Err(_), None) => self.refreshing.lock().await,
        };
        if let Some((rendered, true)) = self.kept() {
            return rendered;
        }
        let rendered = self.render(fetch(&self.aggregator).await);
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        *kept = Some((Instant::now(), rendered.clone()));
        rendered
    }

    fn render(&self, answer: Answer) -> Rendered {
        let summary =
            Bytes::from(serde_json::to_vec(&answer.verdict.summary()).unwrap_or_default());
        let full = if self.details {
            Bytes::from(serde_json::to_vec(&answer.verdict).unwrap_or_default())
        } else {
            summary.clone()
        };
        Rendered {
            status: answer.status,
            cache_control: answer.cache_control,
            full,
            summary,
        }
    }
}

struct Answer {
    status: StatusCode,
    cache_control: Option<String>,
    verdict: Verdict,
}

async fn fetch(aggregator: &Upstream) -> Answer {
    let call = aggregator
        .get("/health")
        .timeout(FETCH_TIMEOUT)
        .send()
        .await;
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
    match response.json::<Verdict>().await {
        Ok(verdict) => Answer {
            status,
            cache_control,
            verdict,
        },
        Err(_) => unreachable("it sent an unreadable verdict"),
    }
}

fn unreachable(reason: &str) -> Answer {
    Answer {
        status: StatusCode::SERVICE_UNAVAILABLE,
        cache_control: None,
        verdict: Verdict::unreachable("health-aggregator", reason),
    }
}

/// The aggregate health verdict (cached by the health aggregator).
///
/// For an admin API key (or anyone, with keys off) the body is the whole
/// verdict (`services` and `checks` too); otherwise status, time and
/// version only.
#[utoipa::path(get, path = "/health", responses(
    (status = 200, description = "OK or WARN", body = Summary, content_type = "application/health+json"),
    (status = 503, description = "ERROR, or the aggregator is unreachable", body = Summary,
        content_type = "application/health+json")
))]
pub async fn health(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    let details = req
        .app_data::<web::Data<Access>>()
        .is_none_or(|access| access.is_admin(req.headers()));
    let answer = state.health.answer().await;
    let mut response = HttpResponse::build(answer.status);
    response.content_type(MEDIA_TYPE);
    if let Some(cache_control) = answer.cache_control {
        response.insert_header(("Cache-Control", cache_control));
    }
    response.body(if details { answer.full } else { answer.summary })
}
