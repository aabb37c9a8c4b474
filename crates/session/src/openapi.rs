//! The session service's OpenAPI document (an internal API).

use chatbot_common::openapi::{
    document as build, error_response, json_response, schema_ref, session_id_parameter,
    session_schemas,
};
use serde_json::{Value, json};

/// The document served at `/openapi.json`.
pub fn document() -> Value {
    let unavailable = error_response("Redis is unavailable");
    let invalid = error_response("invalid id");
    let missing = error_response("unknown or expired session");
    let paths = json!({
        "/sessions/{id}": {
            "parameters": [session_id_parameter()],
            "get": {"summary": "A session with its turns.", "responses": {
                "200": json_response("the session", schema_ref("Session")),
                "404": missing, "422": invalid, "503": unavailable
            }},
            "delete": {"summary": "Delete a session.", "responses": {
                "204": {"description": "deleted"},
                "404": missing, "422": invalid, "503": unavailable
            }}
        },
        "/stats": {"get": {"summary": "Active sessions (one ZCOUNT).", "responses": {
            "200": json_response("counts", json!({"type": "object", "properties": {
                "active_sessions": {"type": "integer"}}})),
            "503": unavailable
        }}}
    });
    build(
        "chatbot session service",
        "Conversation context in Redis (internal API).",
        paths,
        session_schemas(),
    )
}
