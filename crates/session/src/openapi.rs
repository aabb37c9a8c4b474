//! The session service's OpenAPI document (an internal API).

use chatbot_common::api::USER_ID_PATTERN;
use chatbot_common::openapi::{
    document as build, error_response, json_response, schema_ref, session_id_parameter,
    session_schemas,
};
use serde_json::{Value, json};

/// The document served at `/openapi.json`.
pub fn document() -> Value {
    let unavailable = error_response("Redis is unavailable");
    let invalid = error_response("invalid id or body");
    let missing = error_response("unknown or expired session");
    let paths = json!({
        "/sessions": {"post": {
            "summary": "Create a session.",
            "requestBody": {"required": true, "content": {"application/json": {"schema": {
                "type": "object", "required": ["user_id"], "additionalProperties": false,
                "properties": {"user_id": {"type": "string", "pattern": USER_ID_PATTERN}}
            }}}},
            "responses": {
                "201": json_response("created", schema_ref("Session")),
                "400": error_response("malformed JSON"),
                "413": error_response("body too large"),
                "422": invalid, "503": unavailable
            }
        }},
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
        "/sessions/{id}/turns": {
            "parameters": [session_id_parameter()],
            "post": {"summary": "Append turns; trims to the cap and refreshes the expiry.",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["turns"], "additionalProperties": false,
                    "properties": {"turns": {"type": "array", "items": schema_ref("Turn")},
                        "create_for": {"type": "string", "pattern": USER_ID_PATTERN,
                            "description": "Create the session for this user when it does not exist."}}
                }}}},
                "responses": {
                    "200": json_response("stored", json!({"type": "object", "properties": {
                        "session_id": {"type": "string", "format": "uuid"},
                        "turn_count": {"type": "integer"}}})),
                    "400": error_response("malformed JSON"),
                    "404": missing, "413": error_response("body too large"),
                    "422": invalid, "503": unavailable
                }
            }
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
