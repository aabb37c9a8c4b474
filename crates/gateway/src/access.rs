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
use std::time::Duration;

use access::{ApiKey, AuthError, Decision, KeyCache, KeyStore, Limiter, Slot, StreamSlots};
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpResponse, web};
use chatbot_common::config::{LimitSettings, Settings};
use chatbot_common::error::{ApiError, ErrorCode};
use chatbot_common::pools;
use chatbot_common::probe::{CheckError, Probe, probe_fn};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Meter};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

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
    /// The keys (reloaded every `auth.refresh_secs` by a task on `tasks`
    /// until `stop`) and the limits of `settings`; `None` when `auth.enabled`
    /// is off (warned about here, once).
    pub fn from_settings(
        settings: &Settings,
        meter: &Meter,
        tasks: &TaskTracker,
        stop: &CancellationToken,
    ) -> std::io::Result<Option<Self>> {
        if !settings.auth.enabled {
            tracing::warn!(
                "auth.enabled = false: the public API accepts requests without an API key and \
                 without rate limits; use this only on a closed network"
            );
            return Ok(None);
        }
        let postgres = pools::postgres(&settings.database).map_err(std::io::Error::other)?;
        let redis = pools::redis_shared(&settings.redis).map_err(std::io::Error::other)?;
        let keys = KeyCache::new(KeyStore::new(postgres));
        let refresh = Duration::from_secs(settings.auth.refresh_secs.max(1));
        tasks.spawn(keys.clone().run_every(refresh, stop.clone()));
        // A stream lasts at most chat's total timeout; the lease adds a margin.
        let lease =
            Duration::from_millis(settings.chat.timeouts.total_ms) + Duration::from_secs(30);
        let prefix = &settings.session.key_prefix;
        Ok(Some(Self {
            keys,
            limiter: Limiter::new(redis.clone(), prefix),
            streams: StreamSlots::new(redis, prefix, lease),
            defaults: settings.limits,
            retry_secs: refresh.as_secs(),
            rejected: meter
                .u64_counter("chatbot_rejected_requests")
                .with_description("Public API requests refused before any work, by reason")
                .build(),
        }))
    }

    /// The readiness check `api_keys`: the keys have been loaded once.
    pub fn keys_loaded(&self) -> impl Probe {
        let keys = self.keys.clone();
        probe_fn(move || {
            let loaded = keys.is_loaded();
            Box::pin(async move {
                loaded.then_some(()).ok_or_else(|| {
                    CheckError::Unreachable("the API keys are not loaded yet".into())
                })
            })
        })
    }

    /// One of `key`'s stream slots, held until the stream ends; 429 with
    /// `Retry-After: 1` when they are all taken.
    pub async fn stream_slot(&self, key: &ApiKey) -> Result<Slot, ApiError> {
        let max = key
            .limits
            .concurrent_streams
            .unwrap_or(self.defaults.concurrent_streams);
        if let Some(slot) = self.streams.acquire(key.id, max).await {
            return Ok(slot);
        }
        self.count("rate_limited");
        Err(ApiError::new(
            ErrorCode::RateLimited,
            format!("over this key's limit of {max} streams at once"),
        )
        .retry_after(1))
    }

    /// Whether `headers` carry a valid admin key (for `/health` details;
    /// not counted against any limit).
    pub fn is_admin(&self, headers: &HeaderMap) -> bool {
        self.keys
            .authenticate(authorization(headers))
            .is_ok_and(|key| key.admin)
    }

    /// The caller's key and its limit's decision, or the answer refusing it.
    async fn admit(&self, headers: &HeaderMap) -> Result<(Arc<ApiKey>, Decision), HttpResponse> {
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
            let retry = (header::RETRY_AFTER, seconds(decision.retry_after));
            Err(error.response_with(rate_headers(&decision).into_iter().chain([retry])))
        }
    }

    fn unauthenticated(&self, error: AuthError) -> HttpResponse {
        if error == AuthError::NotLoaded {
            let retry = HeaderValue::from(self.retry_secs.max(1));
            return ApiError::new(ErrorCode::ServiceUnavailable, error.to_string())
                .response_with([(header::RETRY_AFTER, retry)]);
        }
        self.count("unauthorized");
        tracing::debug!(reason = error.reason(), "request without a valid API key");
        let challenge = if error == AuthError::Missing {
            HeaderValue::from_static("Bearer realm=\"chatbot\"")
        } else {
            HeaderValue::from_static("Bearer realm=\"chatbot\", error=\"invalid_token\"")
        };
        ApiError::new(ErrorCode::Unauthorized, error.to_string())
            .response_with([(header::WWW_AUTHENTICATE, challenge)])
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

fn seconds(duration: std::time::Duration) -> HeaderValue {
    HeaderValue::from(duration.as_secs() + u64::from(duration.subsec_nanos() > 0))
}

fn rate_headers(decision: &Decision) -> [(HeaderName, HeaderValue); 3] {
    [
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
        Err(refused) => Ok(req.into_response(refused).map_into_right_body()),
    }
}
