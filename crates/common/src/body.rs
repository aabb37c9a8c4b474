//! Reading JSON request bodies with a size limit and precise errors.
//!
//! actix's own `Json` extractor answers some failures with text bodies; this
//! one keeps every answer in our error format: 413 past the limit (checked on
//! `Content-Length` first, then while reading), 400 for text that is not JSON,
//! 422 for JSON of the wrong shape, 408 `request_timeout` for a body that
//! takes longer than [`BODY_TIMEOUT`] to arrive (a slow or stalled client
//! holds nothing for long). The content type is not enforced, so a
//! `curl -d` without `-H` works.

use actix_web::HttpRequest;
use actix_web::http::header::CONTENT_LENGTH;
use actix_web::web::{BytesMut, Payload};
use futures::StreamExt;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ErrorCode};

/// The longest a client may take to send a request body.
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads the whole body, refusing more than `limit` bytes or a body that
/// takes longer than [`BODY_TIMEOUT`].
pub async fn read_limited(
    req: &HttpRequest,
    payload: Payload,
    limit: usize,
) -> Result<BytesMut, ApiError> {
    tokio::time::timeout(BODY_TIMEOUT, read_body(req, payload, limit))
        .await
        .unwrap_or_else(|_| {
            Err(ApiError::new(
                ErrorCode::RequestTimeout,
                format!("the request body took longer than {BODY_TIMEOUT:?} to arrive"),
            ))
        })
}

async fn read_body(
    req: &HttpRequest,
    mut payload: Payload,
    limit: usize,
) -> Result<BytesMut, ApiError> {
    let too_large = || {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("request body is larger than {limit} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(too_large());
    }
    let mut body = BytesMut::with_capacity(declared.unwrap_or(1024).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::new(
                ErrorCode::MalformedJson,
                format!("could not read request body: {e}"),
            )
        })?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Parses JSON, telling malformed text (400) from a wrong shape (422).
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::new(
            ErrorCode::MalformedJson,
            "request body is empty; expected a JSON object",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => ApiError::invalid(e.to_string()),
            Category::Syntax | Category::Eof | Category::Io => {
                ApiError::new(ErrorCode::MalformedJson, format!("malformed JSON: {e}"))
            }
        }
    })
}

/// Reads and parses a JSON body in one step.
pub async fn read_json<T: DeserializeOwned>(
    req: &HttpRequest,
    payload: Payload,
    limit: usize,
) -> Result<T, ApiError> {
    let body = read_limited(req, payload, limit).await?;
    parse_json(&body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Msg {
        text: String,
    }

    fn code(body: &str) -> Option<ErrorCode> {
        parse_json::<Msg>(body.as_bytes()).err().map(|e| e.code)
    }

    #[test]
    fn tells_syntax_from_shape() {
        assert_eq!(code("{\"text\": "), Some(ErrorCode::MalformedJson));
        assert_eq!(code("not json"), Some(ErrorCode::MalformedJson));
        assert_eq!(code(""), Some(ErrorCode::MalformedJson));
        assert_eq!(code("{\"text\": 3}"), Some(ErrorCode::InvalidRequest));
        assert_eq!(code("{}"), Some(ErrorCode::InvalidRequest));
        assert_eq!(code("[1]"), Some(ErrorCode::InvalidRequest));
        assert_eq!(
            code("{\"text\":\"a\",\"x\":1}"),
            Some(ErrorCode::InvalidRequest)
        );
        assert_eq!(code("{\"text\":\"a\"}"), None);
    }
}
