//! What the OpenAPI document says of the compatible routes beyond what
//! utoipa derives from their types: the session header, the failures (the
//! same statuses in each API's error shape) and [`refine_schemas`].

/// The `X-Chatbot-Session` header, as the OpenAPI document describes it.
#[derive(utoipa::IntoParams)]
#[into_params(names("x-chatbot-session"), parameter_in = Header)]
pub struct SessionHeader(
    /// Continue this session of the same key and user: its stored history
    /// replaces the one sent, and the exchange is added to it (empty: none).
    #[param(
        required = false,
        pattern = "^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})?$"
    )]
    #[allow(dead_code)]
    String,
);

/// Writes into the document what utoipa cannot derive from the types: the
/// `messages` of both chat requests must hold a user message (JSON
/// Schema's `contains`), `stop` takes at most 4 sequences, and a user
/// message's text parts are at least one.
pub fn refine_schemas(document: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::{AdditionalProperties, Schema};
    let Some(components) = document.components.as_mut() else {
        return;
    };
    for name in ["openai.ChatCompletionRequest", "ollama.ChatRequest"] {
        let Some(RefOr::T(Schema::Object(request))) = components.schemas.get_mut(name) else {
            continue;
        };
        if let Some(RefOr::T(Schema::Array(messages))) = request.properties.get_mut("messages") {
            let user = serde_json::json!({
                "type": "object",
                "properties": {"role": {"const": "user"}},
                "required": ["role"]
            });
            let mut extensions = messages.extensions.take().unwrap_or_default();
            extensions.insert("contains".to_owned(), user);
            messages.extensions = Some(extensions);
        }
    }
    let mut array_of = |name: &str, set: &dyn Fn(&mut utoipa::openapi::schema::Array)| {
        if let Some(RefOr::T(Schema::OneOf(one_of))) = components.schemas.get_mut(name) {
            for item in &mut one_of.items {
                if let RefOr::T(Schema::Array(array)) = item {
                    set(array);
                }
            }
        }
    };
    array_of("openai.Stop", &|array| array.max_items = Some(4));
    array_of("openai.UserContent", &|array| array.min_items = Some(1));
    // Each role's message takes only its own fields (serde's
    // `deny_unknown_fields` on a tagged enum, which utoipa leaves out).
    for name in ["openai.InputMessage", "ollama.Message"] {
        if let Some(RefOr::T(Schema::OneOf(one_of))) = components.schemas.get_mut(name) {
            for item in &mut one_of.items {
                if let RefOr::T(Schema::Object(message)) = item {
                    message.additional_properties =
                        Some(Box::new(AdditionalProperties::FreeForm(false)));
                }
            }
        }
    }
}

/// The failures of a compatible route, whose bodies are the schema
/// `schema` (each API's error shape; the statuses are the same).
pub(crate) fn failures(
    schema: &str,
) -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::Response>> {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    [
        ("400", "malformed JSON, invalid or unsupported fields"),
        ("401", "no API key, or an unknown one"),
        ("404", "unknown model, or session"),
        ("413", "body larger than the limit"),
        ("429", "over the key's limits"),
        ("502", "the LLM failed"),
        ("503", "the LLM or an internal service is unavailable"),
        ("504", "the LLM or an internal service timed out"),
    ]
    .into_iter()
    .map(|(status, description)| {
        let body = ContentBuilder::new()
            .schema(Some(Ref::from_schema_name(schema)))
            .build();
        let response = ResponseBuilder::new()
            .description(description)
            .content("application/json", body);
        (status.to_owned(), response.build().into())
    })
    .collect()
}
