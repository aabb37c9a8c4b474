//! `chatbot-ops keys`: the public API's keys (crate `access`) made, listed
//! and revoked. A new key is printed once and never again: only its digest
//! is stored. A revocation reaches every gateway within `auth.refresh_secs`.

use access::{ApiKey, KeyStore, Limits, StoreError};
use chatbot_common::config::Settings;
use chatbot_common::error::ErrorChain;
use serde_json::json;

use crate::cli::KeysAction;
use crate::error::OpsError;
use crate::output::{Outcome, Report, Table};

/// Runs one `keys` action.
pub async fn run(settings: &Settings, action: KeysAction) -> Result<Report, OpsError> {
    let store = KeyStore::new(crate::report::pool(settings)?);
    match action {
        KeysAction::Create {
            name,
            admin,
            rpm,
            streams,
        } => {
            let limits = Limits {
                requests_per_minute: rpm,
                concurrent_streams: streams,
            };
            let (key, token) = store.create(&name, admin, limits).await.map_err(failure)?;
            let mut table = Table::new(
                "New API key: shown only now, store it safely",
                &["name", "key"],
            );
            table.push([key.name.clone(), token.expose().to_owned()]);
            let mut json = json!(key);
            json["key"] = json!(token.expose());
            Ok(report(vec![table], json))
        }
        KeysAction::List => {
            let keys = store.list().await.map_err(failure)?;
            let mut table = Table::new("API keys", COLUMNS);
            for key in &keys {
                table.push(row(key));
            }
            Ok(report(vec![table], json!(keys)))
        }
        KeysAction::Revoke { name } => {
            let Some(key) = store.revoke(&name).await.map_err(failure)? else {
                return Err(OpsError::NotFound(format!(
                    "no active API key is named '{name}' or has that prefix"
                )));
            };
            let mut table = Table::new(
                "Revoked (every gateway refuses it within auth.refresh_secs)",
                COLUMNS,
            );
            table.push(row(&key));
            Ok(report(vec![table], json!(key)))
        }
    }
}

const COLUMNS: &[&str] = &[
    "name",
    "prefix",
    "admin",
    "requests/min",
    "streams",
    "created",
    "revoked",
];

fn report(tables: Vec<Table>, json: serde_json::Value) -> Report {
    Report {
        outcome: Outcome::Ok,
        tables,
        json,
        csv: false,
    }
}

fn row(key: &ApiKey) -> Vec<String> {
    let time = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M:%S").to_string();
    let limit = |n: Option<u32>| n.map_or_else(|| "default".to_owned(), |n| n.to_string());
    vec![
        key.name.clone(),
        key.prefix.clone(),
        if key.admin { "yes" } else { "no" }.to_owned(),
        limit(key.limits.requests_per_minute),
        limit(key.limits.concurrent_streams),
        time(key.created_at),
        key.revoked_at.map_or_else(|| "-".to_owned(), time),
    ]
}

fn failure(error: StoreError) -> OpsError {
    match error {
        StoreError::NameTaken(_) => OpsError::Usage(error.to_string()),
        other => OpsError::Database(ErrorChain(&other).to_string()),
    }
}
