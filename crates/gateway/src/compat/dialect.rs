//! Errors in each API's own shape: [`CompatError`] (ours, and the field at
//! fault), [`Dialect`] (how OpenAI and Ollama write an error) and the
//! [`in_dialect`] middleware, which renders every error answer of a route,
//! whatever produced it, in the route's dialect.

use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, ResponseError};
use chatbot_common::error::{ApiError, ErrorBody, ErrorCode};

/// Which API's error shape to answer in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `{"error": {"message", "type", "param", "code"}}`.
    OpenAi,
    /// `{"error": "..."}`.
    Ollama,
}

/// An error of a compatible route: ours, and the request field it is about
/// (OpenAI's `param`).
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct CompatError {
    /// The error, with its stable code.
    pub error: ApiError,
    /// The request field at fault, if one is.
    pub param: Option<String>,
}

impl CompatError {
    /// 400 about the request field `param`.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            error: ApiError::invalid(message),
            param: Some(param.into()),
        }
    }
}

impl From<ApiError> for CompatError {
    fn from(error: ApiError) -> Self {
        Self { error, param: None }
    }
}

impl ResponseError for CompatError {
    fn status_code(&self) -> StatusCode {
        self.error.status_code()
    }

    // Our own shape; [`in_dialect`] renders it in the route's.
    fn error_response(&self) -> HttpResponse {
        self.error.error_response()
    }
}

impl Dialect {
    /// The status an error is answered with: 422 becomes 400.
    fn status(error: &ApiError) -> StatusCode {
        match error.code {
            ErrorCode::InvalidRequest => StatusCode::BAD_REQUEST,
            code => code.status(),
        }
    }

    /// The error's JSON body in this dialect.
    pub fn body(self, error: &ApiError, param: Option<&str>) -> serde_json::Value {
        match self {
            Self::OpenAi => super::openai::error_body(error, param),
            Self::Ollama => serde_json::json!({ "error": error.message }),
        }
    }

    /// The error's response in this dialect, with `Retry-After` when it has one.
    pub fn render(self, error: &ApiError, param: Option<&str>) -> HttpResponse {
        let mut response = HttpResponse::build(Self::status(error));
        if let Some(seconds) = error.retry_after {
            response.insert_header((actix_web::http::header::RETRY_AFTER, seconds));
        }
        response.json(self.body(error, param))
    }
}

/// Middleware rendering every error answer of a route in `dialect`: a
/// [`CompatError`] or [`ApiError`] a handler returned, or an answer in our
/// JSON shape made before the handler (401, 429, 503 of the key check, 403
/// of CORS, 405). Headers (`Retry-After`, `WWW-Authenticate`, `RateLimit-*`)
/// stay.
pub async fn in_dialect(
    dialect: Dialect,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody, BoxBody>>, actix_web::Error> {
    let response = next.call(req).await?;
    if !response.status().is_client_error() && !response.status().is_server_error() {
        return Ok(response.map_into_left_body());
    }
    let returned = response.response().error().and_then(|error| {
        if let Some(compat) = error.as_error::<CompatError>() {
            return Some((compat.error.clone(), compat.param.clone()));
        }
        error.as_error::<ApiError>().map(|e| (e.clone(), None))
    });
    let (request, answer) = response.into_parts();
    let (head, body) = answer.into_parts();
    let bytes = actix_web::body::to_bytes(body).await.unwrap_or_default();
    let ours = returned.or_else(|| {
        let body: ErrorBody = serde_json::from_slice(&bytes).ok()?;
        Some((body.error, None))
    });
    let Some((error, param)) = ours else {
        return Ok(
            ServiceResponse::new(request, head.set_body(BoxBody::new(bytes))).map_into_right_body(),
        );
    };
    let mut rendered = dialect.render(&error, param.as_deref());
    for (name, value) in head.headers() {
        if name != CONTENT_TYPE && name != CONTENT_LENGTH {
            rendered.headers_mut().insert(name.clone(), value.clone());
        }
    }
    Ok(ServiceResponse::new(request, rendered.map_into_boxed_body()).map_into_right_body())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn errors_take_each_dialect_shape_with_400_for_invalid_fields() {
        let invalid = CompatError::invalid("n", "only n = 1");
        let body = Dialect::OpenAi.body(&invalid.error, invalid.param.as_deref());
        assert_eq!(body["error"]["param"], "n");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(Dialect::status(&invalid.error), StatusCode::BAD_REQUEST);
        let limited = ApiError::new(ErrorCode::RateLimited, "slow down").retry_after(3);
        let body = Dialect::OpenAi.body(&limited, None);
        assert_eq!(body["error"]["code"], "rate_limit_exceeded");
        let response = Dialect::Ollama.render(&limited, None);
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers().get("retry-after").unwrap(), "3");
        assert_eq!(
            Dialect::Ollama.body(&limited, None),
            serde_json::json!({"error": "slow down"})
        );
        let down = ApiError::new(ErrorCode::LlmUnavailable, "down");
        assert_eq!(
            Dialect::OpenAi.body(&down, None)["error"]["type"],
            "server_error"
        );
    }
}
