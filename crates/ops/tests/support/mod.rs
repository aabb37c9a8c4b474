//! What the integration tests of `chatbot-ops` share.

#![allow(clippy::unwrap_used)]

use test_support::shared_postgres;

/// A fresh database on the shared test cluster with chat's schema (its
/// migrations, as `chat migrate` applies them); its URL.
pub async fn migrated_database() -> String {
    let url = shared_postgres().fresh_database().await;
    let settings = chatbot_common::config::DatabaseSettings {
        url: url.as_str().into(),
        ..chatbot_common::config::Settings::default().database
    };
    chat::db::migrate(&chat::db::pool(&settings).unwrap())
        .await
        .unwrap();
    url
}
