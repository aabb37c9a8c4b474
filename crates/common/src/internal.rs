//! The shared secret between the services (`internal.token`).
//!
//! chat, session and the health aggregator serve their APIs only to the
//! gateway and the operators' tools. A service built with
//! [`crate::server::ServiceBuilder::internal`] requires
//! `Authorization: Bearer <internal.token>` on every route but `/livez`,
//! `/readyz` and `/metrics` whenever a token is set, and refuses to start
//! without one when it listens beyond loopback (anyone who can reach the
//! port could otherwise read every conversation). A missing or wrong token is
//! 401 `unauthorized`; the comparison takes the same time wherever the
//! tokens differ. Callers add the token with [`client_headers`].

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web;

use crate::config::Secret;
use crate::error::{ApiError, ErrorCode};

/// Routes open without the token: probes and Prometheus.
const OPEN: [&str; 3] = ["/livez", "/readyz", "/metrics"];

/// The expected `Authorization` value, in the app's data.
#[derive(Clone)]
pub struct InternalToken(String);

impl InternalToken {
    /// Expects `Bearer <token>`.
    pub fn new(token: &Secret) -> Self {
        Self(format!("Bearer {}", token.expose()))
    }

    fn accepts(&self, presented: &[u8]) -> bool {
        let expected = self.0.as_bytes();
        expected.len() == presented.len()
            && expected
                .iter()
                .zip(presented)
                .fold(0u8, |differ, (a, b)| differ | (a ^ b))
                == 0
    }
}

/// Headers that carry `token` on every call to an internal service (none
/// without a token). Marked sensitive, so they are never logged.
pub fn client_headers(token: Option<&Secret>) -> reqwest::header::HeaderMap {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(Ok(mut value)) =
        token.map(|t| reqwest::header::HeaderValue::from_str(&format!("Bearer {}", t.expose())))
    {
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    headers
}

/// The middleware: lets a request through when no token is expected, the
/// route is open, or it carries the token.
pub async fn require(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let allowed = match req.app_data::<web::Data<InternalToken>>() {
        None => true,
        Some(_) if OPEN.contains(&req.path()) => true,
        Some(token) => token.accepts(presented(req.headers())),
    };
    if allowed {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    let response = ApiError::new(
        ErrorCode::Unauthorized,
        "this is an internal service: send Authorization: Bearer <internal.token>",
    )
    .response_with([(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"chatbot-internal\""),
    )]);
    Ok(req.into_response(response).map_into_right_body())
}

fn presented(headers: &HeaderMap) -> &[u8] {
    headers
        .get(header::AUTHORIZATION)
        .map_or(&[][..], HeaderValue::as_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_token_is_accepted() {
        let token = InternalToken::new(&Secret::from("a-long-enough-secret"));
        assert!(token.accepts(b"Bearer a-long-enough-secret"));
        for wrong in [
            &b""[..],
            b"Bearer",
            b"Bearer a-long-enough-secreT",
            b"a-long-enough-secret",
        ] {
            assert!(!token.accepts(wrong));
        }
    }
}
