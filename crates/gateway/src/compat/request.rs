//! What a compatible request asks, in the terms of an exchange: the user
//! ([`user_of`]), the session ([`session_of`]), the conversation split
//! around its last user message ([`Conversation`]) and the model and
//! options ([`Asked`]), which together make the [`ExchangeRequest`] sent to
//! chat.

use actix_web::{HttpMessage, HttpRequest};
use chatbot_common::api::{
    Api, Compat, ExchangeRequest, GenerationOptions, HistoryTurn, Role, USER_ID_MAX,
    validate_user_id,
};
use chatbot_common::error::{ApiError, ErrorCode};
use uuid::Uuid;

use super::{CompatError, SESSION_HEADER};
use crate::access::Caller;

/// The user of an exchange when the client names none and keys are off.
const ANONYMOUS: &str = "anonymous";

/// The user an exchange is stored under: the one the client names (checked
/// as `/api/chat` checks `user_id`), else the API key's name (characters
/// outside `A-Z a-z 0-9 _ . @ : -` replaced by `_`), else `anonymous`.
pub fn user_of(
    req: &HttpRequest,
    named: Option<String>,
    param: &str,
) -> Result<String, CompatError> {
    if let Some(user) = named {
        validate_user_id(&user)
            .map_err(|e| CompatError::invalid(param, e.message.replace("user_id", param)))?;
        return Ok(user);
    }
    let key_name = req.extensions().get::<Caller>().map(|Caller(key)| {
        key.name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "_.@:-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .take(USER_ID_MAX)
            .collect::<String>()
    });
    Ok(key_name
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| ANONYMOUS.to_owned()))
}

/// 400 unless `body` is a JSON object (or not JSON at all, which the
/// parser reports): serde's derive would read an array field by field.
pub fn require_an_object(body: &[u8]) -> Result<(), CompatError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[' | b'"' | b'0'..=b'9' | b'-' | b't' | b'f' | b'n') => Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "the request body must be a JSON object",
        )
        .into()),
        _ => Ok(()),
    }
}

/// The session the `X-Chatbot-Session` header names, if any (an empty
/// header names none): a UUID in its hyphenated form, as `/api/chat`
/// returns it.
pub fn session_of(req: &HttpRequest) -> Result<Option<Uuid>, CompatError> {
    req.headers()
        .get(SESSION_HEADER)
        .filter(|value| !value.is_empty())
        .map(|value| {
            value
                .to_str()
                .ok()
                .filter(|v| v.len() == 36)
                .and_then(|v| Uuid::parse_str(v).ok())
                .ok_or_else(|| {
                    let sent: String = String::from_utf8_lossy(value.as_bytes())
                        .chars()
                        .take(64)
                        .collect();
                    CompatError::invalid(
                        SESSION_HEADER,
                        format!("{SESSION_HEADER} must be a session id (a UUID), not '{sent}'"),
                    )
                })
        })
        .transpose()
}

/// A message of a client's conversation, in either API.
#[derive(Debug)]
pub enum Said {
    /// A system (or OpenAI developer) message.
    System(String),
    /// A user message.
    User(String),
    /// An assistant message.
    Assistant(String),
}

/// A client's conversation, split as an exchange needs it.
#[derive(Debug, Default, PartialEq)]
pub struct Conversation {
    /// Every system message, joined by blank lines (`None`: none sent,
    /// `chat.system_prompt` applies).
    pub system: Option<String>,
    /// The turns before `message`.
    pub history: Vec<HistoryTurn>,
    /// The last user message: the one stored and classified.
    pub message: String,
    /// The assistant turns after it.
    pub after: Vec<HistoryTurn>,
}

impl Conversation {
    /// Splits `messages`; each user message must be a valid message
    /// (`max_chars`), and one must be there. Errors name
    /// `{param}[i].content`.
    pub fn split(messages: Vec<Said>, max_chars: usize, param: &str) -> Result<Self, CompatError> {
        let last_user = messages.iter().rposition(|m| matches!(m, Said::User(_)));
        let Some(last_user) = last_user else {
            return Err(CompatError::invalid(
                param,
                format!("{param} must include a message with the role user"),
            ));
        };
        let mut conversation = Self::default();
        let mut system = Vec::new();
        for (i, said) in messages.into_iter().enumerate() {
            let (role, content) = match said {
                Said::System(content) => {
                    system.push(content);
                    continue;
                }
                Said::User(content) => {
                    chatbot_common::api::validate_message(&content, max_chars).map_err(|e| {
                        CompatError::invalid(
                            format!("{param}[{i}].content"),
                            format!("{param}[{i}].content: {}", e.message),
                        )
                    })?;
                    (Role::User, content)
                }
                Said::Assistant(content) => (Role::Assistant, content),
            };
            if i == last_user {
                conversation.message = content;
            } else {
                let turn = HistoryTurn { role, content };
                if i < last_user {
                    conversation.history.push(turn)
                } else {
                    conversation.after.push(turn)
                }
            }
        }
        conversation.system = (!system.is_empty()).then(|| system.join("\n\n"));
        Ok(conversation)
    }
}

/// What a compatible request asks of an exchange, besides its conversation.
pub struct Asked {
    /// The API it came through.
    pub api: Api,
    /// The model named.
    pub model: String,
    /// Sampling options.
    pub options: GenerationOptions,
    /// Streamed or not.
    pub stream: bool,
}

impl Asked {
    /// What a request asks; the model must be named (400 `model`).
    pub fn new(
        api: Api,
        model: String,
        options: GenerationOptions,
        stream: bool,
    ) -> Result<Self, CompatError> {
        if model.trim().is_empty() {
            return Err(CompatError::invalid("model", "model is required"));
        }
        Ok(Self {
            api,
            model,
            options,
            stream,
        })
    }

    /// The exchange to send chat, with a new id (returned too): the user
    /// and session of the request ([`user_of`], [`session_of`]).
    pub fn exchange(
        self,
        req: &HttpRequest,
        user: Option<String>,
        user_param: &str,
        conversation: Conversation,
    ) -> Result<(ExchangeRequest, Uuid), CompatError> {
        let id = Uuid::new_v4();
        let exchange = ExchangeRequest {
            user_id: user_of(req, user, user_param)?,
            message: conversation.message,
            session_id: session_of(req)?,
            stream: self.stream,
            compat: Some(Compat {
                api: self.api,
                id,
                model: Some(self.model),
                system: conversation.system,
                history: conversation.history,
                after: conversation.after,
                options: self.options,
            }),
        };
        Ok((exchange, id))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_conversation_is_split_around_its_last_user_message() {
        let said = vec![
            Said::System("Be brief.".into()),
            Said::User("first".into()),
            Said::Assistant("an answer".into()),
            Said::System("And polite.".into()),
            Said::User("second".into()),
            Said::Assistant("Sure, ".into()),
        ];
        let conversation = Conversation::split(said, 100, "messages").unwrap();
        assert_eq!(
            conversation.system.as_deref(),
            Some("Be brief.\n\nAnd polite.")
        );
        assert_eq!(conversation.message, "second");
        let roles: Vec<Role> = conversation.history.iter().map(|t| t.role).collect();
        assert_eq!(roles, [Role::User, Role::Assistant]);
        assert_eq!(conversation.after.len(), 1);
        assert_eq!(conversation.after[0].content, "Sure, ");
    }

    #[test]
    fn a_conversation_without_a_valid_user_message_is_refused_naming_it() {
        let none = Conversation::split(vec![Said::System("s".into())], 100, "messages");
        assert_eq!(none.unwrap_err().param.as_deref(), Some("messages"));
        let blank = Conversation::split(
            vec![Said::User("ok".into()), Said::User(" ".into())],
            100,
            "messages",
        );
        let blank = blank.unwrap_err();
        assert_eq!(blank.param.as_deref(), Some("messages[1].content"));
        assert!(
            blank.error.message.contains("must not be empty"),
            "{}",
            blank.error.message
        );
        let long = Conversation::split(vec![Said::User("x".repeat(11))], 10, "prompt");
        assert_eq!(
            long.unwrap_err().param.as_deref(),
            Some("prompt[0].content")
        );
    }
}
