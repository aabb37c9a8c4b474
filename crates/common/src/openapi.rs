//! Pieces of the OpenAPI documents every service serves at `/openapi.json`.
//!
//! Each service writes its own paths; [`document`] adds the common routes
//! (`/livez`, `/readyz`, `/metrics`, `/openapi.json`) and the shared `Error`
//! schema, so the documents stay exact without repeating those parts.

use serde_json::{Value, json};

use crate::error::ErrorCode;

/// A response whose body is the standard error envelope.
pub fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    })
}

/// A JSON response with a schema.
pub fn json_response(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

/// A reference to a schema in `components`.
pub fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn error_schema() -> Value {
    let codes: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    json!({
        "type": "object",
        "required": ["error"],
        "additionalProperties": false,
        "properties": {"error": {
            "type": "object",
            "required": ["code", "message"],
            "additionalProperties": false,
            "properties": {
                "code": {"type": "string", "enum": codes},
                "message": {"type": "string"}
            }
        }}
    })
}

fn common_paths() -> Value {
    let probe = |summary: &str| {
        json!({"get": {
            "summary": summary,
            "responses": {
                "200": json_response("healthy", json!({"type": "object"})),
                "503": json_response("not ready", json!({"type": "object"}))
            }
        }})
    };
    json!({
        "/livez": {"get": {
            "summary": "The process answers (never checks a dependency).",
            "responses": {"200": json_response("alive", json!({"type": "object"}))}
        }},
        "/readyz": probe("The service's own required dependencies are usable."),
        "/metrics": {"get": {
            "summary": "Prometheus metrics.",
            "responses": {"200": {"description": "metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}}
        }},
        "/openapi.json": {"get": {
            "summary": "This document.",
            "responses": {"200": json_response("OpenAPI 3.0 document", json!({"type": "object"}))}
        }}
    })
}

/// A whole OpenAPI 3.0 document: the service's `paths` and `schemas` plus the
/// common routes and the `Error` schema.
pub fn document(title: &str, description: &str, paths: Value, schemas: Value) -> Value {
    let mut all_paths = common_paths();
    merge(&mut all_paths, paths);
    let mut all_schemas = json!({"Error": error_schema()});
    merge(&mut all_schemas, schemas);
    json!({
        "openapi": "3.0.3",
        "info": {"title": title, "version": env!("CARGO_PKG_VERSION"), "description": description},
        "paths": all_paths,
        "components": {"schemas": all_schemas}
    })
}

fn merge(into: &mut Value, from: Value) {
    if let (Some(into), Value::Object(from)) = (into.as_object_mut(), from) {
        into.extend(from);
    }
}

/// Schemas of [`crate::api::SessionView`] and [`crate::api::Turn`], shared by
/// the session service and the gateway that relays them.
pub fn session_schemas() -> Value {
    json!({
        "Turn": {
            "type": "object",
            "required": ["role", "content", "created_at"],
            "additionalProperties": false,
            "properties": {
                "role": {"type": "string", "enum": ["user", "assistant"]},
                "content": {"type": "string"},
                "message_id": {"type": "string", "format": "uuid"},
                "created_at": {"type": "string", "format": "date-time"}
            }
        },
        "Session": {
            "type": "object",
            "required": ["session_id", "user_id", "created_at", "updated_at", "expires_at", "turns"],
            "additionalProperties": false,
            "properties": {
                "session_id": {"type": "string", "format": "uuid"},
                "user_id": {"type": "string"},
                "created_at": {"type": "string", "format": "date-time"},
                "updated_at": {"type": "string", "format": "date-time"},
                "expires_at": {"type": "string", "format": "date-time"},
                "turns": {"type": "array", "items": schema_ref("Turn")}
            }
        }
    })
}

/// The `{id}` path parameter of session routes.
pub fn session_id_parameter() -> Value {
    json!({
        "name": "id", "in": "path", "required": true,
        "description": "The session id (a UUID).",
        "schema": {"type": "string", "format": "uuid"}
    })
}

/// Schemas of [`crate::api::ChatRequest`] and [`crate::api::ChatResponse`];
/// `max_message_chars` is the configured limit, so the document is exact.
pub fn chat_schemas(max_message_chars: usize) -> Value {
    use crate::api::{MessageType, USER_ID_PATTERN, Urgency};
    let types: Vec<&str> = MessageType::ALL.iter().map(|t| t.as_str()).collect();
    let urgencies: Vec<&str> = Urgency::ALL.iter().map(|u| u.as_str()).collect();
    json!({
        "ChatRequest": {
            "type": "object",
            "required": ["user_id", "message"],
            "additionalProperties": false,
            "properties": {
                "user_id": {"type": "string", "pattern": USER_ID_PATTERN,
                    "description": "Who is writing."},
                "message": {"type": "string", "minLength": 1, "maxLength": max_message_chars,
                    "pattern": "^[^\\u0000]*[^\\u0000\\t\\n\\r ][^\\u0000]*$",
                    "description": "The message: not blank, no NUL characters."},
                "session_id": {"type": "string", "format": "uuid", "nullable": true,
                    "description": "Continue this session; omit it (or send null) to start one."},
                "stream": {"type": "boolean", "default": false,
                    "description": "Answer as server-sent events."}
            }
        },
        "ChatResponse": {
            "type": "object",
            "required": ["session_id", "message_id", "reply", "type", "urgency", "model",
                "response_time_ms", "usage"],
            "additionalProperties": false,
            "properties": {
                "session_id": {"type": "string", "format": "uuid"},
                "message_id": {"type": "string", "format": "uuid"},
                "reply": {"type": "string"},
                "type": {"type": "string", "enum": types},
                "urgency": {"type": "string", "enum": urgencies},
                "model": {"type": "string"},
                "response_time_ms": {"type": "integer", "minimum": 0},
                "usage": {
                    "type": "object",
                    "required": ["prompt_tokens", "completion_tokens"],
                    "additionalProperties": false,
                    "properties": {
                        "prompt_tokens": {"type": "integer", "minimum": 0},
                        "completion_tokens": {"type": "integer", "minimum": 0}
                    }
                }
            }
        }
    })
}

/// The `POST` operation of a chat route (the gateway's `/api/chat` and chat's
/// internal `/chat` take and give the same bodies).
pub fn chat_operation() -> Value {
    json!({
        "summary": "Send a message and get the LLM's reply.",
        "description": "With `stream: true` the answer is `text/event-stream`: `token` events \
            (`{\"content\"}`), then one `done` event carrying the ChatResponse; an LLM failure \
            after the first token ends the stream with an `error` event carrying the error body.",
        "requestBody": {"required": true, "content": {"application/json": {"schema": schema_ref("ChatRequest")}}},
        "responses": {
            "200": {"description": "the reply", "content": {
                "application/json": {"schema": schema_ref("ChatResponse")},
                "text/event-stream": {"schema": {
                    "description": "One server-sent event; `data` is JSON: `{\"content\"}` for \
                        `token`, a ChatResponse for `done`, an Error for `error`.",
                    "type": "object",
                    "required": ["event", "data"],
                    "properties": {
                        "event": {"type": "string", "enum": ["token", "done", "error"]},
                        "data": {"type": "string"}
                    }
                }}
            }},
            "400": error_response("malformed JSON"),
            "404": error_response("unknown or expired session"),
            "413": error_response("body larger than the limit"),
            "422": error_response("invalid fields"),
            "502": error_response("the LLM failed"),
            "503": error_response("the LLM or an internal service is unavailable"),
            "504": error_response("the LLM or an internal service timed out")
        }
    })
}
