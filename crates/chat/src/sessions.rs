//! Conversation history, read and appended straight in Redis.
//!
//! The Redis layout belongs to the [`session_store`] crate, which the session
//! service uses too; chat reads and appends through it directly on the hot
//! path instead of two HTTP calls to the session service per message, which
//! cost more CPU than everything else chat does (docs/performance.md).
//!
//! Redis holds conversation context, not the record: when Redis is down, chat
//! still answers (without history) and still stores the exchange in
//! PostgreSQL. Only "this session does not exist" stops a request.

use chatbot_common::api::Turn;
use chatbot_common::error::{ApiError, ErrorChain, ErrorCode};
use session_store::{Owner, SessionStore, StoreError};
use uuid::Uuid;

/// What the store said about a session.
#[derive(Debug)]
pub enum Lookup {
    /// The session's last turns, oldest first.
    Found(Vec<Turn>),
    /// It does not exist, has expired, or belongs to someone else.
    Missing,
    /// The store could not answer; go on without history.
    Unavailable(ApiError),
}

/// Sessions, as chat uses them.
pub struct Sessions {
    store: SessionStore,
}

impl Sessions {
    /// Sessions in `store`.
    pub fn new(store: SessionStore) -> Self {
        Self { store }
    }

    /// The last `last` turns of a session that belongs to `owner` (the same
    /// API key and user).
    pub async fn lookup(&self, id: Uuid, owner: &Owner, last: usize) -> Lookup {
        match self.store.recent(id, last).await {
            Ok(Some((stored, turns))) if stored == *owner => Lookup::Found(turns),
            Ok(_) => Lookup::Missing,
            Err(error) => Lookup::Unavailable(unavailable(&error)),
        }
    }

    /// Whether a session the store does not know may be brought back from
    /// PostgreSQL: not when it was deleted (or when Redis cannot say).
    pub async fn may_restore(&self, id: Uuid) -> bool {
        matches!(self.store.was_deleted(id).await, Ok(false))
    }

    /// Appends the turns of one exchange; `create_for` starts a new session
    /// for that owner in the same step.
    pub async fn append(
        &self,
        id: Uuid,
        turns: &[Turn],
        create_for: Option<&Owner>,
    ) -> Result<(), ApiError> {
        match self.store.append(id, turns, create_for).await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(ApiError::new(
                ErrorCode::SessionNotFound,
                format!("session {id} expired during the exchange"),
            )),
            Err(error) => Err(unavailable(&error)),
        }
    }
}

fn unavailable(error: &StoreError) -> ApiError {
    ApiError::new(
        ErrorCode::ServiceUnavailable,
        format!(
            "the session store (Redis) is unavailable: {}",
            ErrorChain(error)
        ),
    )
}
