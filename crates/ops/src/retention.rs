//! Retention, applied the same way to the local catalogue and to the bucket
//! (each judged on its own): a good backup whose dump is older than
//! `dump_retention_days` is deleted whole; one whose archives are older than
//! `archive_retention_days` loses its `logs.tar.gz` and `config.tar.gz` but
//! keeps its dump and its manifest (which still lists the archives: their
//! absence past that age is expected). A backup without a complete manifest
//! is deleted once it is more than a day old (a run that failed or died);
//! a younger one may still be running. Ages are read from the backup ids
//! (their start times).
//!
//! Never deleted: the newest good backup, whatever its age, and anything that
//! is not a backup file of ours (folders or keys not named by a backup id,
//! files not named in [`crate::manifest::KNOWN`]). A whole backup loses its
//! manifest first, so an interrupted deletion leaves an incomplete backup,
//! never a "good" one without its dump.

use std::collections::BTreeSet;
use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::catalog::{self, MANIFEST};
use crate::error::OpsError;
use crate::manifest::{ARCHIVES, is_known};
use crate::store::Bucket;

/// How long things are kept.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Days a dump (and so a whole backup) is kept.
    pub dump_days: u64,
    /// Days the archives are kept.
    pub archive_days: u64,
}

/// An incomplete backup younger than this may still be running.
const STALE_AFTER_HOURS: i64 = 24;

/// A backup as found in one place.
#[derive(Debug, Clone)]
pub struct Held {
    /// Its id.
    pub id: String,
    /// When it started.
    pub started: DateTime<Utc>,
    /// Whether its manifest there says it is complete.
    pub good: bool,
    /// Its files there (known names only).
    pub files: BTreeSet<String>,
}

/// What to delete of one backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Action {
    /// Which backup.
    pub id: String,
    /// Its files to delete, in order (the manifest first).
    pub files: Vec<String>,
    /// The whole backup goes (its folder too, when nothing else is left in it).
    pub whole: bool,
    /// Why.
    pub reason: String,
}

/// What retention deleted, where.
#[derive(Debug, Clone, Serialize)]
pub struct Deleted {
    /// `local` or the bucket's URL.
    pub place: String,
    /// What was deleted and why.
    #[serde(flatten)]
    pub action: Action,
}

/// What to delete of `held` at `now`.
pub fn plan(held: &[Held], now: DateTime<Utc>, policy: Policy) -> Vec<Action> {
    let newest_good = held
        .iter()
        .filter(|h| h.good)
        .max_by_key(|h| h.started)
        .map(|h| h.id.as_str());
    held.iter()
        .filter(|h| Some(h.id.as_str()) != newest_good)
        .filter_map(|h| action(h, now - h.started, policy))
        .collect()
}

fn action(held: &Held, age: Duration, policy: Policy) -> Option<Action> {
    // Clamped: a huge setting means "keep", not an overflow.
    let days = |n: u64| Duration::days(n.min(1_000_000) as i64);
    let whole = |reason: String| {
        let manifest = held.files.iter().filter(|f| *f == MANIFEST);
        let rest = held.files.iter().filter(|f| *f != MANIFEST);
        Some(Action {
            id: held.id.clone(),
            files: manifest.chain(rest).cloned().collect(),
            whole: true,
            reason,
        })
    };
    if !held.good {
        if age <= Duration::hours(STALE_AFTER_HOURS) {
            return None;
        }
        return whole("incomplete and more than a day old".into());
    }
    if age > days(policy.dump_days) {
        return whole(format!("dump older than {} days", policy.dump_days));
    }
    let archives: Vec<String> = ARCHIVES
        .iter()
        .filter(|a| held.files.contains(**a))
        .map(|a| (*a).to_owned())
        .collect();
    (age > days(policy.archive_days) && !archives.is_empty()).then(|| Action {
        id: held.id.clone(),
        files: archives,
        whole: false,
        reason: format!("archives older than {} days", policy.archive_days),
    })
}

/// The backups in the local catalogue `root`.
pub fn held_locally(root: &Path) -> Vec<Held> {
    catalog::list(root)
        .into_iter()
        .map(|b| Held {
            good: catalog::is_good(&b.dir),
            files: std::fs::read_dir(&b.dir)
                .into_iter()
                .flatten()
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| is_known(name))
                .collect(),
            id: b.id,
            started: b.started,
        })
        .collect()
}

/// Applies retention to the local catalogue `root`.
pub fn apply_locally(
    root: &Path,
    now: DateTime<Utc>,
    policy: Policy,
) -> Result<Vec<Deleted>, OpsError> {
    let actions = plan(&held_locally(root), now, policy);
    for action in &actions {
        remove_local(&root.join(&action.id), &action.files, action.whole)?;
    }
    Ok(deleted("local", actions))
}

/// Deletes `files` of the backup folder `dir`, and the folder when `whole`
/// and nothing else is left in it.
pub fn remove_local(dir: &Path, files: &[String], whole: bool) -> Result<(), OpsError> {
    for file in files {
        let path = dir.join(file);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(OpsError::io(format!("deleting {}", path.display()), e));
            }
            _ => {}
        }
    }
    if whole {
        // Fails, and so keeps the folder, when something not ours is inside.
        let _ = std::fs::remove_dir(dir);
    }
    Ok(())
}

/// Applies retention to the bucket.
pub async fn apply_to_bucket(
    bucket: &Bucket,
    now: DateTime<Utc>,
    policy: Policy,
) -> Result<Vec<Deleted>, OpsError> {
    let mut held = Vec::new();
    for listed in bucket.list().await? {
        let Some(started) = catalog::started(&listed.id) else {
            continue;
        };
        let good = listed.files.contains(MANIFEST) && bucket.is_good(&listed.id).await?;
        held.push(Held {
            id: listed.id,
            started,
            good,
            files: listed.files,
        });
    }
    let actions = plan(&held, now, policy);
    for action in &actions {
        for file in &action.files {
            bucket.delete(&action.id, file).await?;
        }
    }
    Ok(deleted(&bucket.url(""), actions))
}

fn deleted(place: &str, actions: Vec<Action>) -> Vec<Deleted> {
    actions
        .into_iter()
        .map(|action| Deleted {
            place: place.trim_end_matches('/').to_owned(),
            action,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{CONFIG, DUMP, LOGS};

    const POLICY: Policy = Policy {
        dump_days: 30,
        archive_days: 7,
    };

    fn now() -> DateTime<Utc> {
        catalog::started("20261201T020000Z").unwrap_or_else(|| panic!("id"))
    }

    fn held(days_ago: i64, good: bool, files: &[&str]) -> Held {
        let started = now() - Duration::days(days_ago) - Duration::minutes(1);
        Held {
            id: catalog::id(started),
            started,
            good,
            files: files.iter().map(|f| (*f).to_owned()).collect(),
        }
    }

    fn all() -> Vec<&'static str> {
        vec![MANIFEST, DUMP, LOGS, CONFIG]
    }

    #[test]
    fn dumps_archives_and_stale_partials_expire_by_age() {
        let backups = [
            held(31, true, &all()),
            held(8, true, &all()),
            held(8, true, &[MANIFEST, DUMP]),
            held(6, true, &all()),
            held(2, false, &[DUMP]),
            held(0, false, &[DUMP]),
            held(0, true, &all()),
        ];
        let actions = plan(&backups, now(), POLICY);
        let summary: Vec<(String, Vec<String>, bool)> = actions
            .into_iter()
            .map(|a| (a.id, a.files, a.whole))
            .collect();
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            summary,
            vec![
                (
                    backups[0].id.clone(),
                    s(&[MANIFEST, CONFIG, DUMP, LOGS]),
                    true
                ),
                (backups[1].id.clone(), s(&[LOGS, CONFIG]), false),
                (backups[4].id.clone(), s(&[DUMP]), true),
            ]
        );
    }

    #[test]
    fn the_newest_good_backup_is_kept_whatever_its_age() {
        let backups = [
            held(60, true, &all()),
            held(40, true, &all()),
            held(3, false, &[DUMP]),
        ];
        let actions = plan(&backups, now(), POLICY);
        let ids: Vec<&str> = actions.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, vec![backups[0].id.as_str(), backups[2].id.as_str()]);
    }
}
