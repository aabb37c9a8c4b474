//! Browsers on other origins calling the public API (`gateway.cors`).
//!
//! `actix-cors` answers preflight requests and adds the
//! `Access-Control-*` headers, outside the API key check, so a preflight
//! (which carries no credentials) is never refused for want of a key. With
//! no `allowed_origins` nothing is added: browsers keep pages of other
//! origins from reading the answers. The response headers a page may read are
//! the rate-limit ones, `Retry-After`, the trace id, the overhead and the
//! stored exchange's id (`x-chatbot-message-id`, on the compatible routes).
//!
//! A preflight the settings do not allow (origin, method or header) is 403
//! `cors_rejected` in our JSON error format, not actix-cors's plain text.

use actix_cors::{Cors, CorsError};
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, ResponseError};
use chatbot_common::config::CorsSettings;
use chatbot_common::error::{ApiError, ErrorCode};

/// Response headers a page may read.
const EXPOSED: [&str; 7] = [
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
    "retry-after",
    "x-trace-id",
    "x-chatbot-overhead-ms",
    crate::compat::MESSAGE_ID_HEADER,
];

/// Checks the settings once at start-up: every origin a bare
/// `scheme://host[:port]` or `*`, every method and header name valid.
pub fn validate(settings: &CorsSettings) -> std::io::Result<()> {
    let invalid = |what: &str, value: &str| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("gateway.cors.{what}: '{value}' is not valid"),
        )
    };
    if let Some(method) = settings
        .allowed_methods
        .iter()
        .find(|m| actix_web::http::Method::from_bytes(m.as_bytes()).is_err())
    {
        return Err(invalid("allowed_methods", method));
    }
    if let Some(name) = settings
        .allowed_headers
        .iter()
        .find(|h| actix_web::http::header::HeaderName::from_bytes(h.as_bytes()).is_err())
    {
        return Err(invalid("allowed_headers", name));
    }
    let bad = settings.allowed_origins.iter().find(|origin| {
        *origin != "*"
            && !origin.parse::<actix_web::http::Uri>().is_ok_and(|uri| {
                uri.scheme().is_some()
                    && uri.host().is_some()
                    && uri.path_and_query().is_none_or(|p| p.as_str() == "/")
                    && !origin.ends_with('/')
            })
    });
    match bad {
        Some(origin) => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "gateway.cors.allowed_origins: '{origin}' is not an origin such as \
                 https://app.example.com (scheme, host and optional port, no path) or '*'"
            ),
        )),
        None => Ok(()),
    }
}

/// The middleware for `settings` (validated with [`validate`]); `None`
/// when no origin is allowed.
pub fn cors(settings: &CorsSettings) -> Option<Cors> {
    if settings.allowed_origins.is_empty() {
        return None;
    }
    let mut cors = Cors::default()
        .allowed_methods(settings.allowed_methods.iter().map(String::as_str))
        .allowed_headers(settings.allowed_headers.iter().map(String::as_str))
        .expose_headers(EXPOSED)
        .max_age(settings.max_age_secs);
    for origin in &settings.allowed_origins {
        cors = if origin == "*" {
            cors.allow_any_origin().send_wildcard()
        } else {
            cors.allowed_origin(origin)
        };
    }
    Some(cors)
}

/// Turns actix-cors's plain-text refusals into our JSON error.
pub async fn json_errors(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let response = next.call(req).await?;
    let refused = response
        .response()
        .error()
        .and_then(|error| error.as_error::<CorsError>())
        .map(ToString::to_string);
    let Some(reason) = refused else {
        return Ok(response.map_into_left_body());
    };
    let error = ApiError::new(ErrorCode::CorsRejected, format!("CORS: {reason}"));
    let (request, _) = response.into_parts();
    let answer: HttpResponse = error.error_response();
    Ok(ServiceResponse::new(request, answer).map_into_right_body())
}
