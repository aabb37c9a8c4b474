//! The chat service's client of the session service.
//!
//! Redis holds conversation context, not the record: when the session service
//! is down, chat still answers (without history) and still stores the
//! exchange in PostgreSQL. Only "this session does not exist" stops a request.

use chatbot_common::api::{AppendTurns, SessionView, Turn};
use chatbot_common::error::{ApiError, ErrorCode};
use chatbot_common::upstream::Upstream;
use reqwest::StatusCode;
use uuid::Uuid;

/// What the session service said about a session.
#[derive(Debug)]
pub enum Lookup {
    /// The session and its turns.
    Found(SessionView),
    /// It does not exist, has expired, or belongs to someone else.
    Missing,
    /// The session service could not answer; go on without history.
    Unavailable(ApiError),
}

/// Calls the session service.
#[derive(Debug, Clone)]
pub struct SessionClient {
    upstream: Upstream,
}

impl SessionClient {
    /// A client of the session service behind `upstream`.
    pub fn new(upstream: Upstream) -> Self {
        Self { upstream }
    }

    /// Fetches a session and checks that it belongs to `user_id`.
    pub async fn lookup(&self, id: Uuid, user_id: &str) -> Lookup {
        let path = format!("/sessions/{id}");
        let response = match self.upstream.get(&path).send().await {
            Ok(r) => r,
            Err(e) => return Lookup::Unavailable(self.upstream.transport_error(&e)),
        };
        if response.status() == StatusCode::NOT_FOUND {
            return Lookup::Missing;
        }
        if !response.status().is_success() {
            return Lookup::Unavailable(self.upstream.error_from(response).await);
        }
        match response.json::<SessionView>().await {
            Ok(session) if session.user_id == user_id => Lookup::Found(session),
            Ok(_) => Lookup::Missing,
            Err(e) => Lookup::Unavailable(self.upstream.transport_error(&e)),
        }
    }

    /// Appends the turns of one exchange; `create_for` starts a new session
    /// for that user in the same call.
    pub async fn append(
        &self,
        id: Uuid,
        turns: Vec<Turn>,
        create_for: Option<String>,
    ) -> Result<(), ApiError> {
        let response = self
            .upstream
            .post(&format!("/sessions/{id}/turns"))
            .json(&AppendTurns { turns, create_for })
            .send()
            .await
            .map_err(|e| self.upstream.transport_error(&e))?;
        if response.status().is_success() {
            Ok(())
        } else if response.status() == StatusCode::NOT_FOUND {
            Err(ApiError::new(
                ErrorCode::SessionNotFound,
                format!("session {id} expired during the exchange"),
            ))
        } else {
            Err(self.upstream.error_from(response).await)
        }
    }
}
