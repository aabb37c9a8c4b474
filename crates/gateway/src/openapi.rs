//! The public API's OpenAPI document: exactly what the gateway serves.

use chatbot_common::openapi::{
    chat_operation, chat_schemas, document as build, error_response, json_response, schema_ref,
    session_id_parameter, session_schemas,
};
use serde_json::{Value, json};

fn health_answer(description: &str) -> Value {
    json!({"description": description, "content": {"application/health+json": {"schema": {
        "type": "object",
        "required": ["status", "timestamp", "version"],
        "properties": {
            "status": {"type": "string", "enum": ["OK", "WARN", "ERROR"]},
            "timestamp": {"type": "string", "format": "date-time"},
            "version": {"type": "string"},
            "services": {"type": "object"},
            "checks": {"type": "object"}
        }
    }}}})
}

/// The document served at `/openapi.json`.
pub fn document(max_message_chars: usize) -> Value {
    let invalid = error_response("the session id is not a UUID");
    let missing = error_response("unknown or expired session");
    let unavailable = error_response("the session service is unavailable");
    let timeout = error_response("the session service timed out");
    let mut chat = chat_operation();
    chat["operationId"] = json!("chat");
    let session = json!({"id": "$response.body#/session_id"});
    chat["responses"]["200"]["links"] = json!({
        "GetSession": {"operationId": "getSession", "parameters": session},
        "DeleteSession": {"operationId": "deleteSession", "parameters": session}
    });
    let paths = json!({
        "/api/chat": {"post": chat},
        "/health": {"get": {
            "summary": "The aggregate health verdict (cached by the health aggregator).",
            "responses": {
                "200": health_answer("OK or WARN"),
                "503": health_answer("ERROR, or the aggregator is unreachable")
            }
        }},
        "/api/sessions/{id}": {
            "parameters": [session_id_parameter()],
            "get": {"operationId": "getSession", "summary": "A session with its turns, oldest first.", "responses": {
                "200": json_response("the session", schema_ref("Session")),
                "404": missing, "422": invalid, "503": unavailable, "504": timeout
            }},
            "delete": {"operationId": "deleteSession", "summary": "Delete a session and its context.", "responses": {
                "204": {"description": "deleted"},
                "404": missing, "422": invalid, "503": unavailable, "504": timeout
            }}
        }
    });
    let mut schemas = chat_schemas(max_message_chars);
    if let (Some(all), Value::Object(more)) = (schemas.as_object_mut(), session_schemas()) {
        all.extend(more);
    }
    build(
        "chatbot gateway",
        "The public API of the chatbot service. Errors are `{\"error\": {\"code\", \"message\"}}` \
         with stable codes.",
        paths,
        schemas,
    )
}
