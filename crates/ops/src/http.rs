//! The HTTP requests of the commands that ask a server: the aggregator's
//! verdict, Prometheus's API, the services' `/livez`. One client setup (a
//! timeout, no proxy: these are local or in-cluster addresses), and one way
//! to say that a server could not be reached.

use std::time::Duration;

use chatbot_common::error::ErrorChain;
use reqwest::StatusCode;
use serde_json::Value;

use crate::error::OpsError;

/// How long one request may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// `what` at `url` could not be reached, or answered unusably.
pub fn unreachable(what: &'static str, url: &str, detail: impl Into<String>) -> OpsError {
    OpsError::Unreachable {
        what,
        url: url.to_owned(),
        detail: detail.into(),
    }
}

/// `GET url`: the response, whatever its status code.
pub async fn get(what: &'static str, url: &str) -> Result<reqwest::Response, OpsError> {
    get_with(what, url, reqwest::header::HeaderMap::new()).await
}

/// [`get`] with `headers` (the internal token, for the aggregator).
pub async fn get_with(
    what: &'static str,
    url: &str,
    headers: reqwest::header::HeaderMap,
) -> Result<reqwest::Response, OpsError> {
    let client = reqwest::Client::builder()
        .default_headers(headers)
        .timeout(TIMEOUT)
        .no_proxy()
        .build()
        .map_err(|e| unreachable(what, url, e.to_string()))?;
    client
        .get(url)
        .send()
        .await
        .map_err(|e| unreachable(what, url, ErrorChain(&e.without_url()).to_string()))
}

/// `GET url`: the status code and the JSON body (`Null` when the body is
/// not JSON).
pub async fn get_json(what: &'static str, url: &str) -> Result<(StatusCode, Value), OpsError> {
    get_json_with(what, url, reqwest::header::HeaderMap::new()).await
}

/// [`get_json`] with `headers`.
pub async fn get_json_with(
    what: &'static str,
    url: &str,
    headers: reqwest::header::HeaderMap,
) -> Result<(StatusCode, Value), OpsError> {
    let response = get_with(what, url, headers).await?;
    let status = response.status();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}
