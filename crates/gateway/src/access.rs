//! API keys and per-key rate limits on the public API routes.
//!
//! [`guard`] runs before every `/api/*` handler: it reads
//! `Authorization: Bearer <key>`, looks the key up in the [`KeyCache`] (no
//! database round trip), counts the request against the key's limit
//! ([`Limiter`], shared through Redis) and either lets it through, with the
//! key in the request's extensions ([`Caller`]) and the `RateLimit-*`
//! headers on the answer, or answers at once:
//!
//! | status | code | headers |
//! |---|---|---|
//! | 401 | `unauthorized` | `WWW-Authenticate: Bearer realm="chatbot"` (with `error="invalid_token"` for a bad key) |
//! | 429 | `rate_limited` | `Retry-After`, `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` |
//! | 503 | `service_unavailable` | `Retry-After` (the keys could not be loaded yet) |
//!
//! A streamed chat also takes one of the key's stream slots
//! ([`Access::stream_slot`]) for as long as it lasts; past
//! `limits.concurrent_streams` (or the key's own) it is 429 `rate_limited`
//! with `Retry-After: 1`.
//!
//! Rejections are counted in `chatbot_rejected_requests{reason}` (`reason`
//! is `unauthorized` or `rate_limited`). With `auth.enabled = false` the
//! guard lets everything through, unlimited.

use std::sync::Arc;

use access::{ApiKey, AuthError, Decision, KeyCache, Limiter, Slot, StreamSlots};
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpResponse, ResponseError, web};
use chatbot_common::config::LimitSettings;
use chatbot_common::error::{ApiError, ErrorCode};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Meter};

/// The keys and limits of the public API.
pub struct Access {
    keys: Arc<KeyCache>,
    limiter: Limiter,
    streams: Arc<StreamSlots>,
    defaults: LimitSettings,
    retry_secs: u64,
    rejected: Counter<u64>,
}

/// The key a request was made with (in the request's extensions).
#[derive(Clone)]
pub struct Caller(pub Arc<ApiKey>);

impl Access {
    /// Checks keys from `keys`, limits through `limiter` and `streams` with
    /// `defaults` for keys without their own; `retry_secs` is the key reload
    /// period.
    pub fn new(
        keys: Arc<KeyCache>,
        (limiter, streams): (Limiter, Arc<StreamSlots>),
        defaults: LimitSettings,
        retry_secs: u64,
        meter: &Meter,
    ) -> Self {
        let rejected = meter
            .u64_counter("chatbot_rejected_requests")
            .with_description("Public API requests refused before any work, by reason")
            .build();
        Self {
            keys,
            limiter,
            streams,
            defaults,
            retry_secs,
            rejected,
        }
    }

    /// One of `key`'s stream slots, held until the stream ends; the 429 to
    /// send when they are all taken.
    pub async fn stream_slot(&self, key: &ApiKey) -> Result<Slot, HttpResponse> {
        let max = key
            .limits
            .concurrent_streams
            .unwrap_or(self.defaults.concurrent_streams);
        if let Some(slot) = self.streams.acquire(key.id, max).await {
            return Ok(slot);
        }
        self.count("rate_limited");
        let error = ApiError::new(
            ErrorCode::RateLimited,
            format!("over this key's limit of {max} streams at once"),
        );
        let headers = vec![(header::RETRY_AFTER, HeaderValue::from_static("1"))];
        Err(Rejection { error, headers }.response())
    }

    /// Whether `headers` carry a valid admin key (for `/health` details;
    /// not counted against any limit).
    pub fn is_admin(&self, headers: &HeaderMap) -> bool {
        self.keys
            .authenticate(authorization(headers))
            .is_ok_and(|key| key.admin)
    }

    async fn admit(&self, headers: &HeaderMap) -> Result<(Arc<ApiKey>, Decision), Rejection> {
        let key = self
            .keys
            .authenticate(authorization(headers))
            .map_err(|error| self.unauthenticated(error))?;
        let limit = key
            .limits
            .requests_per_minute
            .unwrap_or(self.defaults.requests_per_minute);
        let decision = self.limiter.check(key.id, limit).await;
        if decision.allowed {
            Ok((key, decision))
        } else {
            self.count("rate_limited");
            let error = ApiError::new(
                ErrorCode::RateLimited,
                format!("over this key's limit of {limit} requests a minute"),
            );
            let mut headers = rate_headers(&decision);
            headers.push((header::RETRY_AFTER, seconds(decision.retry_after)));
            Err(Rejection { error, headers })
        }
    }

    fn unauthenticated(&self, error: AuthError) -> Rejection {
        if error == AuthError::NotLoaded {
            let error = ApiError::new(ErrorCode::ServiceUnavailable, error.to_string());
            let retry = HeaderValue::from(self.retry_secs.max(1));
            return Rejection {
                error,
                headers: vec![(header::RETRY_AFTER, retry)],
            };
        }
        self.count("unauthorized");
        tracing::debug!(reason = error.reason(), "request without a valid API key");
        let challenge = if error == AuthError::Missing {
            HeaderValue::from_static("Bearer realm=\"chatbot\"")
        } else {
            HeaderValue::from_static("Bearer realm=\"chatbot\", error=\"invalid_token\"")
        };
        Rejection {
            error: ApiError::new(ErrorCode::Unauthorized, error.to_string()),
            headers: vec![(header::WWW_AUTHENTICATE, challenge)],
        }
    }

    fn count(&self, reason: &'static str) {
        self.rejected.add(1, &[KeyValue::new("reason", reason)]);
    }
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .map(|value| value.to_str().unwrap_or_default())
}

/// A refused request: the error and the headers that explain it.
#[derive(Debug)]
struct Rejection {
    error: ApiError,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Rejection {
    fn response(&self) -> HttpResponse {
        let mut response = self.error.error_response();
        let headers = response.headers_mut();
        for (name, value) in &self.headers {
            headers.insert(name.clone(), value.clone());
        }
        response
    }
}

fn seconds(duration: std::time::Duration) -> HeaderValue {
    HeaderValue::from(duration.as_secs() + u64::from(duration.subsec_nanos() > 0))
}

fn rate_headers(decision: &Decision) -> Vec<(HeaderName, HeaderValue)> {
    vec![
        (
            HeaderName::from_static("ratelimit-limit"),
            HeaderValue::from(decision.limit),
        ),
        (
            HeaderName::from_static("ratelimit-remaining"),
            HeaderValue::from(decision.remaining),
        ),
        (
            HeaderName::from_static("ratelimit-reset"),
            seconds(decision.reset),
        ),
    ]
}

/// The middleware on the public API routes (see the module docs).
pub async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let Some(access) = req.app_data::<web::Data<Access>>().cloned() else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    match access.admit(req.headers()).await {
        Ok((key, decision)) => {
            req.extensions_mut().insert(Caller(key));
            let mut response = next.call(req).await?;
            let headers = response.headers_mut();
            for (name, value) in rate_headers(&decision) {
                headers.insert(name, value);
            }
            Ok(response.map_into_left_body())
        }
        Err(rejection) => Ok(req
            .into_response(rejection.response())
            .map_into_right_body()),
    }
}
