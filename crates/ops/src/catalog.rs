//! The local backup catalogue: one folder per backup under
//! `ops.backup.dir`, named by its UTC start time (`20261201T020000Z`), with
//! `manifest.json` written last. A backup is good only when its manifest is
//! there and says `"complete": true` (written after every file, and every
//! upload, succeeded), so a partial backup never counts.

use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDateTime, Utc};

/// The name of a backup folder's manifest.
pub const MANIFEST: &str = "manifest.json";

/// The format of a backup's id (its folder name).
pub const ID_FORMAT: &str = "%Y%m%dT%H%M%SZ";

/// A backup found in the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backup {
    /// Its id, the folder name.
    pub id: String,
    /// When it was started.
    pub started: DateTime<Utc>,
    /// Its folder.
    pub dir: PathBuf,
}

/// The id of a backup started at `at`.
pub fn id(at: DateTime<Utc>) -> String {
    at.format(ID_FORMAT).to_string()
}

/// When the backup `id` was started, if `id` is a backup id.
pub fn started(id: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(id, ID_FORMAT)
        .ok()
        .map(|t| t.and_utc())
}

/// Whether the backup in `dir` is complete (its manifest says so).
pub fn is_good(dir: &Path) -> bool {
    std::fs::read(dir.join(MANIFEST)).is_ok_and(|bytes| says_complete(&bytes))
}

/// Whether the manifest `bytes` says `"complete": true` (the same test for
/// a local manifest and for one in the bucket).
pub fn says_complete(bytes: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .is_ok_and(|manifest| manifest["complete"] == true)
}

/// Every backup folder under `root`, oldest first, good or not.
pub fn list(root: &Path) -> Vec<Backup> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut backups: Vec<Backup> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .filter_map(|e| {
            let id = e.file_name().to_string_lossy().into_owned();
            started(&id).map(|started| Backup {
                id,
                started,
                dir: e.path(),
            })
        })
        .collect();
    backups.sort_by_key(|b| b.started);
    backups
}

/// The newest good backup under `root`.
pub fn newest_good(root: &Path) -> Option<Backup> {
    list(root).into_iter().rev().find(|b| is_good(&b.dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_complete_backups_count() {
        let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let write = |id: &str, manifest: Option<&str>| {
            let dir = root.path().join(id);
            std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
            if let Some(m) = manifest {
                std::fs::write(dir.join(MANIFEST), m).unwrap_or_else(|e| panic!("{e}"));
            }
        };
        write("20261101T020000Z", Some(r#"{"complete": true}"#));
        write("20261102T020000Z", Some(r#"{"complete": false}"#));
        write("20261103T020000Z", None);
        write("not-a-backup", Some(r#"{"complete": true}"#));
        assert_eq!(list(root.path()).len(), 3);
        let newest = newest_good(root.path()).map(|b| b.id);
        assert_eq!(newest.as_deref(), Some("20261101T020000Z"));
    }
}
