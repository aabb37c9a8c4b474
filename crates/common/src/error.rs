//! The one mapping from errors to HTTP responses.
//!
//! Every error a client sees is `{"error": {"code": "...", "message": "..."}}`
//! with a stable machine-readable code from [`ErrorCode`] and the status that
//! code implies. A 500 says nothing about internals; the cause is logged once,
//! where the error is turned into a response.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::{Deserialize, Serialize};

/// Stable error codes: clients may match on them, so they never change meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The body is not valid JSON (400).
    MalformedJson,
    /// The body is larger than the configured limit (413).
    PayloadTooLarge,
    /// The client took too long to send its request body (408).
    RequestTimeout,
    /// A field is missing, has the wrong type or an invalid value (422).
    InvalidRequest,
    /// No API key, a malformed one, or one that is unknown or revoked (401).
    Unauthorized,
    /// The API key's request rate is over its limit (429).
    RateLimited,
    /// A browser's cross-origin request that the CORS settings do not allow
    /// (403).
    CorsRejected,
    /// The session does not exist or has expired (404).
    SessionNotFound,
    /// No such route (404).
    NotFound,
    /// No LLM backend has the model asked for (404).
    ModelNotFound,
    /// The route exists but not with this method (405).
    MethodNotAllowed,
    /// The LLM answered with an error (502).
    LlmError,
    /// The LLM cannot be reached (503).
    LlmUnavailable,
    /// The LLM did not answer in time (504).
    LlmTimeout,
    /// An internal service or dependency cannot be reached (503).
    ServiceUnavailable,
    /// An internal service did not answer in time (504).
    UpstreamTimeout,
    /// The service has as many exchanges in progress as it takes; retry
    /// after `Retry-After` (503).
    Overloaded,
    /// The exchange could be neither stored nor kept for later (the
    /// database is down and the outbox full or failing): refused rather than
    /// answered and lost (503).
    StorageUnavailable,
    /// Something unexpected; details are in the logs (500).
    Internal,
}

impl ErrorCode {
    /// The HTTP status this code is served with.
    pub fn status(self) -> StatusCode {
        match self {
            Self::MalformedJson => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::InvalidRequest => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::CorsRejected => StatusCode::FORBIDDEN,
            Self::SessionNotFound | Self::NotFound | Self::ModelNotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::LlmError => StatusCode::BAD_GATEWAY,
            Self::LlmUnavailable
            | Self::ServiceUnavailable
            | Self::Overloaded
            | Self::StorageUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::LlmTimeout | Self::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The code as it appears in JSON, also used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MalformedJson => "malformed_json",
            Self::PayloadTooLarge => "payload_too_large",
            Self::RequestTimeout => "request_timeout",
            Self::InvalidRequest => "invalid_request",
            Self::Unauthorized => "unauthorized",
            Self::RateLimited => "rate_limited",
            Self::CorsRejected => "cors_rejected",
            Self::SessionNotFound => "session_not_found",
            Self::NotFound => "not_found",
            Self::ModelNotFound => "model_not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::LlmError => "llm_error",
            Self::LlmUnavailable => "llm_unavailable",
            Self::LlmTimeout => "llm_timeout",
            Self::ServiceUnavailable => "service_unavailable",
            Self::UpstreamTimeout => "upstream_timeout",
            Self::Overloaded => "overloaded",
            Self::StorageUnavailable => "storage_unavailable",
            Self::Internal => "internal",
        }
    }

    /// Every code, for documentation and tests.
    pub const ALL: [ErrorCode; 19] = [
        Self::MalformedJson,
        Self::PayloadTooLarge,
        Self::RequestTimeout,
        Self::InvalidRequest,
        Self::Unauthorized,
        Self::RateLimited,
        Self::CorsRejected,
        Self::SessionNotFound,
        Self::NotFound,
        Self::ModelNotFound,
        Self::MethodNotAllowed,
        Self::LlmError,
        Self::LlmUnavailable,
        Self::LlmTimeout,
        Self::ServiceUnavailable,
        Self::UpstreamTimeout,
        Self::Overloaded,
        Self::StorageUnavailable,
        Self::Internal,
    ];
}

/// An error answer: a code and a message meant for the client.
#[derive(
    Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(deny_unknown_fields)]
#[error("{code:?}: {message}")]
pub struct ApiError {
    /// The stable code.
    pub code: ErrorCode,
    /// A human-readable explanation, safe to show to the client.
    pub message: String,
    /// Seconds after which a retry may succeed, sent as `Retry-After`
    /// (not part of the body).
    #[serde(skip)]
    pub retry_after: Option<u64>,
}

/// The JSON envelope `{"error": {...}}`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// The error.
    pub error: ApiError,
}

impl ApiError {
    /// An error with a code and a client-facing message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The same error, telling the client to retry after `seconds`.
    #[must_use]
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    /// 422 for an invalid field.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }

    /// 500, logging the cause here so the body can stay silent about it.
    pub fn internal(cause: &(dyn std::error::Error + 'static)) -> Self {
        tracing::error!(error = %ErrorChain(cause), "internal error");
        Self::new(ErrorCode::Internal, "internal error; see the service logs")
    }

    /// The error's response with `headers` added (`Allow`, `Retry-After`,
    /// `WWW-Authenticate`: what tells the client what to do next).
    pub fn response_with(
        &self,
        headers: impl IntoIterator<
            Item = (
                actix_web::http::header::HeaderName,
                actix_web::http::header::HeaderValue,
            ),
        >,
    ) -> HttpResponse {
        let mut response = self.error_response();
        for (name, value) in headers {
            response.headers_mut().insert(name, value);
        }
        response
    }

    /// The `{"error": ...}` body as JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&ErrorBody {
            error: self.clone(),
        })
        .unwrap_or_else(|_| String::from("{\"error\":{\"code\":\"internal\",\"message\":\"\"}}"))
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if let Some(seconds) = self.retry_after {
            response.insert_header((actix_web::http::header::RETRY_AFTER, seconds));
        }
        response
            .content_type("application/json")
            .body(self.to_json())
    }
}

/// Formats an error with its whole source chain on one line.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialize_as_their_stable_names() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_value(code).unwrap_or_default();
            assert_eq!(json, code.as_str());
        }
    }

    #[test]
    fn body_has_code_and_message() {
        let body = ApiError::invalid("message must not be empty").to_json();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        assert_eq!(v["error"]["code"], "invalid_request");
        assert_eq!(v["error"]["message"], "message must not be empty");
    }
}
