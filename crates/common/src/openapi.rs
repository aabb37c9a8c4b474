//! The OpenAPI documents every service serves at `/openapi.json`, derived by
//! utoipa from the wire types ([`crate::api`], [`crate::error`],
//! [`crate::verdict`]) and the `#[utoipa::path]` attribute on each handler.
//!
//! A service derives `utoipa::OpenApi` over its own handlers; the server adds
//! the common routes ([`CommonRoutes`]: `/livez`, `/readyz`, `/metrics`,
//! `/openapi.json`), and [`limit_message_length`] writes the configured
//! message limit into the `ChatRequest` schema, so each document says exactly
//! what its service accepts. The pieces two services share (the chat
//! operation's answers, the session id parameter) live here once.

use serde_json::Value;
use utoipa::openapi::schema::Schema;
use utoipa::openapi::{OpenApi as Document, RefOr};
use utoipa::{IntoParams, IntoResponses};

use crate::error::ErrorBody;

/// The routes every service serves (see [`crate::server`]).
/// The error envelope is registered here: utoipa collects the schemas of
/// `body = ...` answers but not those of [`IntoResponses`] types.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        crate::server::livez,
        crate::server::readyz,
        crate::telemetry::metrics_handler,
        crate::server::openapi
    ),
    components(schemas(ErrorBody))
)]
pub struct CommonRoutes;

/// Adds the common routes to a service's document; `/metrics` only when it
/// is served on the same listener (`with_metrics`).
pub fn with_common_routes(mut document: Document, with_metrics: bool) -> Document {
    document.merge(<CommonRoutes as utoipa::OpenApi>::openapi());
    if !with_metrics {
        document.paths.paths.remove("/metrics");
    }
    document
}

/// The document as served: JSON, with each link's `operationId` and
/// `operationRef` spelled as OpenAPI spells them (utoipa 5.5 serializes its
/// `Link` fields in snake_case).
pub fn to_json(document: &Document) -> serde_json::Result<Vec<u8>> {
    let mut json = serde_json::to_value(document)?;
    let operations = json
        .get_mut("paths")
        .and_then(Value::as_object_mut)
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.values_mut());
    let links = operations
        .filter_map(|operation| operation.get_mut("responses")?.as_object_mut())
        .flat_map(|responses| responses.values_mut())
        .filter_map(|response| response.get_mut("links")?.as_object_mut())
        .flat_map(|links| links.values_mut())
        .filter_map(Value::as_object_mut);
    for link in links {
        for (snake, camel) in [
            ("operation_id", "operationId"),
            ("operation_ref", "operationRef"),
        ] {
            if let Some(value) = link.remove(snake) {
                link.insert(camel.to_owned(), value);
            }
        }
    }
    serde_json::to_vec(&json)
}

/// Sets `maxLength` of the `message` of `ChatRequest` and `ExchangeRequest`
/// (whichever the document has) to the configured limit.
pub fn limit_message_length(document: &mut Document, max_message_chars: usize) {
    for name in ["ChatRequest", "ExchangeRequest"] {
        limit_length(document, name, Some("message"), max_message_chars);
    }
}

/// Sets `maxLength` of the string schema `schema` (or of its `property`),
/// if the document has it.
pub fn limit_length(document: &mut Document, schema: &str, property: Option<&str>, max: usize) {
    let Some(components) = document.components.as_mut() else {
        return;
    };
    let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(schema) else {
        return;
    };
    let target = match property {
        None => Some(object),
        Some(name) => match object.properties.get_mut(name) {
            Some(RefOr::T(Schema::Object(field))) => Some(field),
            _ => None,
        },
    };
    if let Some(target) = target {
        target.max_length = Some(max);
    }
}

/// The `{id}` path parameter of session routes.
#[derive(IntoParams)]
#[into_params(names("id"), parameter_in = Path)]
pub struct SessionId(
    /// The session id (a UUID).
    #[allow(dead_code)]
    uuid::Uuid,
);

/// One server-sent event of a streamed chat answer: `data` is JSON,
/// `{"content"}` for `token`, a ChatResponse for `done`, an Error for `error`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct StreamEvent {
    /// `token`, `done` or `error`.
    #[schema(pattern = "^(token|done|error)$")]
    event: String,
    /// The event's JSON.
    data: String,
}

/// The answers of a chat route (the gateway's `/api/chat`, chat's `/chat`),
/// besides the 200 each route describes with its own links.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum ChatFailures {
    /// malformed JSON
    #[response(status = 400)]
    Malformed(ErrorBody),
    /// unknown or expired session
    #[response(status = 404)]
    NoSession(ErrorBody),
    /// body larger than the limit
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// invalid fields
    #[response(status = 422)]
    Invalid(ErrorBody),
    /// the LLM failed
    #[response(status = 502)]
    LlmFailed(ErrorBody),
    /// the LLM or an internal service is unavailable
    #[response(status = 503)]
    Unavailable(ErrorBody),
    /// the LLM or an internal service timed out
    #[response(status = 504)]
    TimedOut(ErrorBody),
}

/// The failures of a session route (the gateway's `/api/sessions/{id}`, the
/// session service's `/sessions/{id}`).
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum SessionFailures {
    /// unknown or expired session
    #[response(status = 404)]
    NoSession(ErrorBody),
    /// the session id is not a UUID
    #[response(status = 422)]
    Invalid(ErrorBody),
    /// the session store is unavailable
    #[response(status = 503)]
    Unavailable(ErrorBody),
    /// the session service timed out
    #[response(status = 504)]
    TimedOut(ErrorBody),
}

/// The refusals of a route that wants an API key (the gateway's `/api/*`).
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum AccessFailures {
    /// no API key, a malformed one, or one unknown or revoked
    /// (`WWW-Authenticate: Bearer`)
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// over the key's rate limit (`Retry-After`, `RateLimit-*`)
    #[response(status = 429)]
    RateLimited(ErrorBody),
}

/// Declares the `api_key` security scheme: `Authorization: Bearer <key>`.
pub struct BearerKey;

impl utoipa::Modify for BearerKey {
    fn modify(&self, document: &mut Document) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.description = Some("An API key made with `chatbot-ops keys create`.".to_owned());
        document
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("api_key", SecurityScheme::Http(scheme));
    }
}
