//! A throwaway S3-compatible server for tests: moto's `moto_server` from the
//! test venv (`CHATBOT_TEST_VENV`, default `<workspace>/.venv`, made by
//! `scripts/setup.sh --test`) on a free port of 127.0.0.1, killed on drop.
//!
//! moto does not check signatures, so the helpers here (create a bucket, put
//! and get an object, list keys) are plain HTTP, independent of the S3
//! client under test: their `Authorization` header only names the access
//! key (objects are private to it).

use crate::external::External;
use crate::util::free_port;

/// Access key id the server accepts (any is accepted).
pub const ACCESS_KEY_ID: &str = "testing";
/// Secret access key the server accepts (any is accepted).
pub const SECRET_ACCESS_KEY: &str = "testing";
/// The region.
pub const REGION: &str = "us-east-1";

/// A running `moto_server`.
pub struct TestS3 {
    server: External,
    http: reqwest::Client,
}

impl TestS3 {
    /// Starts `moto_server` on a free port and waits until it answers.
    /// Panics when it is missing or does not come up.
    pub fn start() -> TestS3 {
        let port = free_port();
        let program = crate::external::venv_tool("moto_server");
        let args = [
            "-H".to_owned(),
            "127.0.0.1".to_owned(),
            "-p".to_owned(),
            port.to_string(),
        ];
        let server = External::spawn(&program.to_string_lossy(), &args, &[], port, "/");
        TestS3 {
            server,
            http: reqwest::Client::builder()
                .no_proxy()
                .default_headers(unsigned_auth())
                .build()
                .unwrap_or_else(|e| panic!("test-support: HTTP client: {e}")),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        self.server.base_url()
    }

    /// The `chatbot-ops` settings (environment variables) for `bucket` here.
    pub fn settings_env(&self, bucket: &str, prefix: &str) -> Vec<(String, String)> {
        [
            ("CHATBOT__OPS__BACKUP__S3__BUCKET", bucket.to_owned()),
            ("CHATBOT__OPS__BACKUP__S3__PREFIX", prefix.to_owned()),
            ("CHATBOT__OPS__BACKUP__S3__ENDPOINT", self.endpoint()),
            ("CHATBOT__OPS__BACKUP__S3__REGION", REGION.to_owned()),
            (
                "CHATBOT__OPS__BACKUP__S3__ACCESS_KEY_ID",
                ACCESS_KEY_ID.to_owned(),
            ),
            (
                "CHATBOT__OPS__BACKUP__S3__SECRET_ACCESS_KEY",
                SECRET_ACCESS_KEY.to_owned(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Creates `bucket`.
    pub async fn create_bucket(&self, bucket: &str) {
        self.send(self.http.put(format!("{}/{bucket}", self.endpoint())))
            .await;
    }

    /// Stores `body` as `bucket/key`.
    pub async fn put(&self, bucket: &str, key: &str, body: Vec<u8>) {
        let url = format!("{}/{bucket}/{key}", self.endpoint());
        self.send(self.http.put(url).body(body)).await;
    }

    /// The object `bucket/key`, `None` when there is none.
    pub async fn get(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let url = format!("{}/{bucket}/{key}", self.endpoint());
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("test-support: GET {url}: {e}"));
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return None;
        }
        Some(self.body(response, &url).await)
    }

    /// Every key of `bucket` with its size, in key order.
    pub async fn keys(&self, bucket: &str) -> Vec<(String, u64)> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut url = format!("{}/{bucket}?list-type=2", self.endpoint());
            if let Some(token) = &token {
                url.push_str(&format!("&continuation-token={}", urlencode(token)));
            }
            let xml = String::from_utf8_lossy(&self.send(self.http.get(&url)).await).into_owned();
            keys.extend(elements(&xml, "Contents").into_iter().map(|c| {
                let key = elements(c, "Key")
                    .first()
                    .map(|k| unescape(k))
                    .unwrap_or_default();
                let size = elements(c, "Size")
                    .first()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                (key, size)
            }));
            token = elements(&xml, "NextContinuationToken")
                .first()
                .map(|t| unescape(t));
            if token.is_none() {
                break;
            }
        }
        keys.sort();
        keys
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Vec<u8> {
        let request = request
            .build()
            .unwrap_or_else(|e| panic!("test-support: S3 request: {e}"));
        let what = format!("{} {}", request.method(), request.url());
        let response = self
            .http
            .execute(request)
            .await
            .unwrap_or_else(|e| panic!("test-support: {what}: {e}"));
        self.body(response, &what).await
    }

    async fn body(&self, response: reqwest::Response, what: &str) -> Vec<u8> {
        let status = response.status();
        let body = response
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("test-support: {what}: {e}"));
        assert!(
            status.is_success(),
            "test-support: {what} answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
        body.to_vec()
    }
}

/// Headers naming [`ACCESS_KEY_ID`] as a signed request would (moto reads
/// the key, not the signature).
fn unsigned_auth() -> reqwest::header::HeaderMap {
    let credential = format!(
        "AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/20260101/{REGION}/s3/aws4_request, \
         SignedHeaders=host, Signature=0"
    );
    [
        ("authorization", credential),
        ("x-amz-date", "20260101T000000Z".to_owned()),
        ("x-amz-content-sha256", "UNSIGNED-PAYLOAD".to_owned()),
    ]
    .into_iter()
    .map(|(name, value)| {
        let value = reqwest::header::HeaderValue::from_str(&value)
            .unwrap_or_else(|e| panic!("test-support: header {name}: {e}"));
        (reqwest::header::HeaderName::from_static(name), value)
    })
    .collect()
}

/// The contents of every `<tag>…</tag>` in `xml`.
fn elements<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    xml.split(open.as_str())
        .skip(1)
        .filter_map(|part| part.split_once(close.as_str()).map(|(inner, _)| inner))
        .collect()
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// Percent-encodes `text` for a URL's query or path segment (RFC 3986's
/// unreserved characters stay).
pub fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_results_are_read_from_the_xml() {
        let xml = "<R><Contents><Key>a&amp;b</Key><Size>3</Size></Contents>\
                   <Contents><Key>c</Key><Size>10</Size></Contents></R>";
        let contents = elements(xml, "Contents");
        assert_eq!(contents.len(), 2);
        assert_eq!(unescape(elements(contents[0], "Key")[0]), "a&b");
        assert_eq!(elements(contents[1], "Size"), ["10"]);
        assert_eq!(urlencode("a b/="), "a%20b%2F%3D");
    }
}
