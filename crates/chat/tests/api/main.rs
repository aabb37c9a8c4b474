//! Integration tests of the chat service: real PostgreSQL and Redis, the real
//! session service, the Ollama simulator, all in this process on port 0.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod exchange;
mod failures;
mod reports;
mod resilience;

use chatbot_common::config::Settings;
use ollama_sim::SimServer;
use reqwest::StatusCode;
use serde_json::{Value, json};
use test_support::app::{backed_settings, connect, send_json, serve};
use test_support::shared_redis;

/// One chat service with its own database, key prefix and simulator.
pub(crate) struct Stack {
    pub(crate) chat: String,
    pub(crate) session: String,
    pub(crate) sim: SimServer,
    pub(crate) db_url: String,
    /// The Redis key prefix of this stack's sessions.
    pub(crate) prefix: String,
    pub(crate) http: reqwest::Client,
}

impl Stack {
    pub(crate) async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts with the defaults, then `tweak` (which may point chat at other
    /// dependencies).
    pub(crate) async fn start_with(tweak: impl FnOnce(&mut Settings)) -> Self {
        let (mut s, sim) = backed_settings(&shared_redis().url()).await;
        s.chat.timeouts.first_token_ms = 2_000;
        s.chat.timeouts.total_ms = 5_000;
        let session = serve(session::build(&s).unwrap());
        tweak(&mut s);
        let db_url = s.database.url.expose().to_owned();
        let prefix = s.session.key_prefix.clone();
        let chat = serve(chat::build(&s).await.unwrap());
        Self {
            chat,
            session,
            sim,
            db_url,
            prefix,
            http: reqwest::Client::new(),
        }
    }

    pub(crate) async fn send(&self, body: Value) -> (StatusCode, Value) {
        send_json(self.http.post(format!("{}/chat", self.chat)).json(&body)).await
    }

    /// Sends chats until one is answered (a breaker's cool-down), for up to
    /// 10 s.
    pub(crate) async fn until_answered(&self) {
        test_support::poll::until(
            "a chat to be answered",
            std::time::Duration::from_secs(10),
            || async {
                let (status, _) = self.send(json!({"user_id": "u", "message": "back?"})).await;
                (status == StatusCode::OK).then_some(())
            },
        )
        .await;
    }

    pub(crate) async fn say(&self, user: &str, message: &str, session: Option<&str>) -> Value {
        let (status, body) = self
            .send(json!({"user_id": user, "message": message, "session_id": session}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// Sends a streamed request; returns status, content type and raw body.
    pub(crate) async fn stream(&self, body: Value) -> (StatusCode, String, String) {
        let response = self
            .http
            .post(format!("{}/chat", self.chat))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, content_type, response.text().await.unwrap())
    }

    pub(crate) async fn db(&self) -> tokio_postgres::Client {
        connect(&self.db_url).await
    }

    /// The stored row of an exchange, waiting up to 5 s for it.
    pub(crate) async fn row(&self, message_id: &str) -> tokio_postgres::Row {
        let id: uuid::Uuid = message_id.parse().unwrap();
        let db = self.db().await;
        let what = format!("exchange {message_id} to be stored");
        test_support::poll::until(&what, std::time::Duration::from_secs(5), || async {
            db.query_opt("SELECT * FROM messages WHERE id = $1", &[&id])
                .await
                .unwrap()
        })
        .await
    }

    pub(crate) async fn rows(&self) -> Vec<tokio_postgres::Row> {
        self.db()
            .await
            .query("SELECT * FROM messages ORDER BY timestamp", &[])
            .await
            .unwrap()
    }
}
