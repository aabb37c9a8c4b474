//! A backup's `manifest.json`: what the backup holds (each file's size and
//! sha256), the row count of every table at the moment of the dump, the
//! versions involved, when it ran, and whether it is complete.
//!
//! The manifest is written last, through a temporary file renamed into
//! place, so a reader sees either no manifest or a whole one; `complete` is
//! `true` only once every file (and every upload) succeeded (see
//! [`crate::catalog`]).

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::catalog::MANIFEST;
use crate::error::OpsError;
use crate::pg::TableStat;

/// The database dump (`pg_dump -Fc`).
pub const DUMP: &str = "database.dump";
/// The log directory's archive.
pub const LOGS: &str = "logs.tar.gz";
/// The configuration directory's archive.
pub const CONFIG: &str = "config.tar.gz";
/// The manifest while it is being written.
pub const MANIFEST_TMP: &str = "manifest.json.tmp";
/// The archives, kept for `archive_retention_days`.
pub const ARCHIVES: [&str; 2] = [LOGS, CONFIG];
/// Every file a backup may hold; nothing else is ever deleted.
pub const KNOWN: [&str; 5] = [MANIFEST, MANIFEST_TMP, DUMP, LOGS, CONFIG];

/// Whether `name` is a file a backup of ours holds.
pub fn is_known(name: &str) -> bool {
    KNOWN.contains(&name)
}

/// The contents of `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// The backup's id (its folder name, its start time).
    pub id: String,
    /// Every file was written and, with a bucket, uploaded and verified.
    pub complete: bool,
    /// When the backup started.
    pub started: DateTime<Utc>,
    /// When it ended.
    pub finished: DateTime<Utc>,
    /// The database dumped (its name, no credentials).
    pub database: String,
    /// The programs and the server.
    pub versions: Versions,
    /// The backup's files.
    pub files: Vec<FileEntry>,
    /// Every table of the `public` schema when the dump was taken.
    pub tables: Vec<TableStat>,
    /// Where it was uploaded (`s3://bucket/prefix/id/`), if anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploaded_to: Option<String>,
    /// Why the backup is not complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The versions involved in a backup.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Versions {
    /// This tool.
    pub chatbot_ops: String,
    /// The PostgreSQL server (`server_version`).
    pub server: String,
    /// `pg_dump --version`.
    pub pg_dump: String,
}

/// One file of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Its name in the backup's folder.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its sha256, hex.
    pub sha256: String,
}

impl Manifest {
    /// The entry of the file `name`.
    pub fn file(&self, name: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.name == name)
    }

    /// The manifest as pretty JSON.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }

    /// Parses a manifest; `what` names it in the error.
    pub fn from_bytes(bytes: &[u8], what: &str) -> Result<Self, OpsError> {
        serde_json::from_slice(bytes)
            .map_err(|e| OpsError::Backup(format!("{what} is not a valid manifest: {e}")))
    }
}

/// Reads `dir/manifest.json`.
pub fn read(dir: &Path) -> Result<Manifest, OpsError> {
    let path = dir.join(MANIFEST);
    let bytes = std::fs::read(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            OpsError::Backup(format!(
                "{} has no {MANIFEST}: not a finished backup",
                dir.display()
            ))
        } else {
            OpsError::io(format!("reading {}", path.display()), e)
        }
    })?;
    Manifest::from_bytes(&bytes, &path.display().to_string())
}

/// Writes `dir/manifest.json` atomically (temporary file, fsync, rename).
pub fn write(dir: &Path, manifest: &Manifest) -> Result<(), OpsError> {
    let tmp = dir.join(MANIFEST_TMP);
    let path = dir.join(MANIFEST);
    let io = |e| OpsError::io(format!("writing {}", path.display()), e);
    std::fs::write(&tmp, manifest.to_bytes()).map_err(io)?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io)
}
