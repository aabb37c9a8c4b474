//! `chatbot-ops drill`: the weekly restore drill.
//!
//! A real backup ([`crate::backup`], uploaded and pruned like any other,
//! with a checksum of every table taken in the dump's own snapshot), then
//! restored into a scratch database created on the same server (the user
//! needs `CREATEDB`) — from the bucket when one is configured, so the copy
//! that would be used after a disaster is the one tested — and every table
//! compared: row count and checksum. The scratch database is dropped at the
//! end, whatever happened. Exit 0 only when every table is identical.

use chatbot_common::config::Settings;
use serde_json::json;

use crate::backup::{self, Done};
use crate::error::OpsError;
use crate::manifest;
use crate::output::Report;
use crate::pg::Target;
use crate::restore::{self, Check, Located};

/// Runs `chatbot-ops drill`.
pub async fn run(settings: &Settings) -> Result<Report, OpsError> {
    let done = backup::create(settings, true).await?;
    let source = Target::from_settings(&settings.database)?;
    let scratch = format!(
        "chatbot_drill_{}_{}",
        done.manifest.id.to_lowercase(),
        std::process::id()
    );
    let checks = in_scratch_database(&source, &scratch, &done).await?;
    let mut report = backup::report(&done);
    let title = format!(
        "drill: backup {} restored into {}",
        done.manifest.id,
        source.with_dbname(&scratch).describe()
    );
    report.outcome = restore::outcome(&checks);
    report.tables.push(restore::checks_table(&title, &checks));
    report.json = json!({
        "backup": report.json,
        "scratch_database": scratch,
        "tables": checks,
    });
    Ok(report)
}

/// Creates the scratch database, restores into it, and drops it again.
async fn in_scratch_database(
    source: &Target,
    scratch: &str,
    done: &Done,
) -> Result<Vec<Check>, OpsError> {
    let admin = source.connect().await?;
    let quoted = format!("\"{}\"", scratch.replace('"', "\"\""));
    admin
        .batch_execute(&format!("CREATE DATABASE {quoted}"))
        .await
        .map_err(|e| {
            let chain = chatbot_common::error::ErrorChain(&e).to_string();
            OpsError::Database(format!(
                "cannot create the scratch database {scratch} (the user needs CREATEDB): {chain}"
            ))
        })?;
    let restored = restore_copy(source, scratch, done).await;
    let dropped = admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
        .await
        .map_err(|e| OpsError::database(&e));
    let checks = restored?;
    dropped?;
    Ok(checks)
}

/// Restores the bucket's copy when there is one, else the local one, each
/// checked against its own manifest.
async fn restore_copy(source: &Target, scratch: &str, done: &Done) -> Result<Vec<Check>, OpsError> {
    let located = match &done.bucket {
        Some(bucket) => restore::download(bucket, &done.manifest.id).await?,
        None => Located::at(&done.dir),
    };
    let manifest = manifest::read(&located.dir)?;
    restore::restore(&located.dir, &manifest, &source.with_dbname(scratch), false).await
}
