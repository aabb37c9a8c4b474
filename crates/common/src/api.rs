//! Wire types shared by the services, and the validation of client input.
//!
//! The gateway, chat and session speak these types to each other, so a field
//! is named, validated and documented in exactly one place.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::ApiError;

/// Longest accepted `user_id`, in characters.
pub const USER_ID_MAX: usize = 128;

/// A client's chat request (`POST /api/chat`).
// The OpenAPI schema's `maxLength` of `message` is set from configuration
// when a service builds its document (`crate::openapi::limit_message_length`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatRequest {
    /// Who is writing: 1 to 128 of `A-Z a-z 0-9 _ . @ : -`.
    #[schema(pattern = "^[A-Za-z0-9_.@:-]{1,128}$")]
    pub user_id: String,
    /// The message: not blank, no NUL characters.
    #[schema(min_length = 1, pattern = r"^[^\u0000]*[^\u0000\t\n\r ][^\u0000]*$")]
    pub message: String,
    /// Continue this session; omit it (or send null) to start one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<Uuid>,
    /// Answer as server-sent events, token by token.
    #[serde(default)]
    #[schema(default = false)]
    pub stream: bool,
}

impl ChatRequest {
    /// Checks every field; `max_message_chars` comes from configuration.
    pub fn validate(&self, max_message_chars: usize) -> Result<(), ApiError> {
        validate_user_id(&self.user_id)?;
        if self
            .message
            .chars()
            .all(|c| matches!(c, ' ' | '\t' | '\n' | '\r'))
        {
            return Err(ApiError::invalid("message must not be empty"));
        }
        let chars = self.message.chars().count();
        if chars > max_message_chars {
            return Err(ApiError::invalid(format!(
                "message is {chars} characters long; the maximum is {max_message_chars}"
            )));
        }
        if self.message.contains('\0') {
            return Err(ApiError::invalid("message must not contain NUL characters"));
        }
        Ok(())
    }
}

/// Checks a user id: 1 to 128 characters of `A-Z a-z 0-9 _ . @ : -`.
pub fn validate_user_id(user_id: &str) -> Result<(), ApiError> {
    let valid_char = |c: char| c.is_ascii_alphanumeric() || "_.@:-".contains(c);
    if user_id.is_empty() || user_id.len() > USER_ID_MAX || !user_id.chars().all(valid_char) {
        return Err(ApiError::invalid(
            "user_id must be 1 to 128 characters of letters, digits and _ . @ : -",
        ));
    }
    Ok(())
}

/// Parses a session id from a path segment (422 when it is not a UUID).
pub fn parse_session_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::invalid("session id must be a UUID"))
}

/// The header in which the gateway tells chat and session which API key a
/// request was made with (its id); they keep each session to that key. The
/// gateway sets it from the authenticated key and never passes on a
/// client's own.
pub const API_KEY_HEADER: &str = "x-chatbot-api-key-id";

/// The API key id of a request from the gateway (`None`: authentication is
/// off, or the caller is not the gateway).
pub fn api_key_of(headers: &actix_web::http::header::HeaderMap) -> Result<Option<Uuid>, ApiError> {
    headers
        .get(API_KEY_HEADER)
        .map(|value| {
            value
                .to_str()
                .ok()
                .and_then(|v| Uuid::parse_str(v).ok())
                .ok_or_else(|| ApiError::invalid(format!("{API_KEY_HEADER} must be a UUID")))
        })
        .transpose()
}

/// What kind of message the user sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MessageType {
    /// Asks something.
    Question,
    /// Reports a problem or dissatisfaction.
    Complaint,
    /// Asks for something to be done.
    Request,
    /// Says hello.
    Greeting,
    /// Comments on the service.
    Feedback,
    /// None of the above.
    Other,
}

impl MessageType {
    /// Every type, in documentation order.
    pub const ALL: [MessageType; 6] = [
        Self::Question,
        Self::Complaint,
        Self::Request,
        Self::Greeting,
        Self::Feedback,
        Self::Other,
    ];

    /// The lowercase name, as stored and as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Question => "question",
            Self::Complaint => "complaint",
            Self::Request => "request",
            Self::Greeting => "greeting",
            Self::Feedback => "feedback",
            Self::Other => "other",
        }
    }

    /// Parses a lowercase name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

/// How soon a human should look at the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Urgency {
    /// Can wait.
    Low,
    /// The default.
    Normal,
    /// Escalated to n8n when configured.
    High,
}

impl Urgency {
    /// Every urgency.
    pub const ALL: [Urgency; 3] = [Self::Low, Self::Normal, Self::High];

    /// The uppercase name, as stored and as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "LOW",
            Self::Normal => "NORMAL",
            Self::High => "HIGH",
        }
    }
}

/// Token counts reported by the LLM.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Usage {
    /// Tokens in the prompt, history included.
    pub prompt_tokens: u32,
    /// Tokens in the reply.
    pub completion_tokens: u32,
}

/// The answer to one chat exchange.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatResponse {
    /// The session the exchange belongs to.
    pub session_id: Uuid,
    /// Id of the stored exchange (the row in `messages`).
    pub message_id: Uuid,
    /// The LLM's reply.
    pub reply: String,
    /// Classified message type.
    #[serde(rename = "type")]
    pub kind: MessageType,
    /// Classified urgency.
    pub urgency: Urgency,
    /// The model that answered.
    pub model: String,
    /// Time from receiving the message to the end of the reply, in ms.
    pub response_time_ms: u64,
    /// Token counts.
    pub usage: Usage,
}

/// Who said a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The user.
    User,
    /// The LLM.
    Assistant,
}

/// One stored turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Turn {
    /// Who said it.
    pub role: Role,
    /// What was said.
    pub content: String,
    /// The exchange it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<Uuid>,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
}

/// A session with its turns, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Session)]
pub struct SessionView {
    /// The session id.
    pub session_id: Uuid,
    /// The user it belongs to.
    pub user_id: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Last activity.
    pub updated_at: DateTime<Utc>,
    /// When it expires unless used again.
    pub expires_at: DateTime<Utc>,
    /// The stored turns, oldest first (capped by `session.max_turns`).
    pub turns: Vec<Turn>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(user_id: &str, message: &str) -> ChatRequest {
        ChatRequest {
            user_id: user_id.into(),
            message: message.into(),
            session_id: None,
            stream: false,
        }
    }

    #[test]
    fn accepts_ordinary_input() {
        assert!(
            request("user_1@example.com", "Hello there")
                .validate(100)
                .is_ok()
        );
        assert!(request("u", &"é".repeat(100)).validate(100).is_ok());
    }

    #[test]
    fn rejects_bad_fields_with_the_field_named() {
        let msg = |r: ChatRequest| r.validate(10).err().map(|e| e.message).unwrap_or_default();
        assert!(msg(request("", "hi")).contains("user_id"));
        assert!(msg(request("a b", "hi")).contains("user_id"));
        assert!(msg(request(&"u".repeat(129), "hi")).contains("user_id"));
        assert!(msg(request("u", "  ")).contains("empty"));
        assert!(msg(request("u", "12345678901")).contains("maximum is 10"));
        assert!(msg(request("u", "a\0b")).contains("NUL"));
    }

    #[test]
    fn type_names_round_trip() {
        for t in MessageType::ALL {
            assert_eq!(MessageType::parse(t.as_str()), Some(t));
        }
    }
}
