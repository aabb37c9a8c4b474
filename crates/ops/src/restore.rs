//! `chatbot-ops restore --from <backup>`: restores a backup's database dump.
//!
//! The backup is a folder, or an id looked up in the local catalogue and
//! then in the bucket (downloaded to a temporary folder). In order:
//!
//! 1. the dump's sha256 is checked against the manifest (a mismatch stops
//!    here: nothing touched);
//! 2. a target database holding any row in any `public` table is refused
//!    unless `--force`;
//! 3. `pg_restore` of the target server's major version runs with
//!    `--clean --if-exists --no-owner --single-transaction`: the objects of
//!    the dump are replaced, owned by the restoring user, and a failure
//!    rolls everything back;
//! 4. every table's row count (and checksum, when the manifest has them) is
//!    compared with the manifest.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use chatbot_common::config::Settings;
use serde::Serialize;
use serde_json::json;

use crate::archive;
use crate::catalog::{self, MANIFEST};
use crate::error::OpsError;
use crate::manifest::{self, DUMP, Manifest};
use crate::output::{Outcome, Report, Table};
use crate::pg::{self, TableStat, Target};
use crate::store::Bucket;

/// A backup's folder, holding its manifest and dump; a temporary one
/// (removed on drop) when it was downloaded.
#[derive(Debug)]
pub struct Located {
    /// The folder.
    pub dir: PathBuf,
    _download: Option<tempfile::TempDir>,
}

/// One table after a restore, next to the manifest's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// The table.
    pub table: String,
    /// Rows in the backup (`None`: not in the backup).
    pub backup_rows: Option<i64>,
    /// Rows restored (`None`: not restored).
    pub restored_rows: Option<i64>,
    /// The backup's checksum, when it has one.
    pub backup_checksum: Option<String>,
    /// The restored table's checksum, when compared.
    pub restored_checksum: Option<String>,
    /// `identical`, `differs`, `missing` or `not in backup`.
    pub status: &'static str,
}

/// Runs `chatbot-ops restore`.
pub async fn run(
    settings: &Settings,
    from: &str,
    target_url: Option<&str>,
    force: bool,
) -> Result<Report, OpsError> {
    let located = locate(settings, from).await?;
    let manifest = manifest::read(&located.dir)?;
    if !manifest.complete {
        eprintln!(
            "chatbot-ops: warning: backup {} is not marked complete ({}); its dump is checked against its manifest",
            manifest.id,
            manifest.error.as_deref().unwrap_or("no reason recorded")
        );
    }
    let target = match target_url {
        Some(url) => Target::from_url(url)?,
        None => Target::from_settings(&settings.database)?,
    };
    let checks = restore(&located.dir, &manifest, &target, force).await?;
    let title = format!("restore of {} into {}", manifest.id, target.describe());
    Ok(report(&title, &checks))
}

/// Finds the backup `from`: a folder, or an id in the local catalogue, else
/// in the bucket.
pub async fn locate(settings: &Settings, from: &str) -> Result<Located, OpsError> {
    let path = Path::new(from);
    if path.is_dir() {
        return Ok(Located::at(path));
    }
    if catalog::started(from).is_none() {
        return Err(OpsError::Usage(format!(
            "--from {from}: neither a backup folder nor a backup id (like 20261201T020000Z)"
        )));
    }
    let local = settings.ops.backup.dir.join(from);
    if local.join(MANIFEST).is_file() {
        return Ok(Located::at(&local));
    }
    match Bucket::from_settings(&settings.ops.backup.s3)? {
        Some(bucket) => download(&bucket, from).await,
        None => Err(OpsError::Backup(format!(
            "backup {from} is not in {} (and no bucket is configured)",
            settings.ops.backup.dir.display()
        ))),
    }
}

/// Downloads the manifest and the dump of backup `id` to a temporary folder.
pub async fn download(bucket: &Bucket, id: &str) -> Result<Located, OpsError> {
    let manifest = bucket.manifest(id).await?.ok_or_else(|| {
        OpsError::Backup(format!(
            "backup {id} not found: no local copy and no {}{MANIFEST}",
            bucket.url(id)
        ))
    })?;
    let tmp = tempfile::Builder::new()
        .prefix("chatbot-restore-")
        .tempdir()
        .map_err(|e| OpsError::io("creating a temporary folder", e))?;
    bucket.download(id, DUMP, &tmp.path().join(DUMP)).await?;
    manifest::write(tmp.path(), &manifest)?;
    Ok(Located {
        dir: tmp.path().to_owned(),
        _download: Some(tmp),
    })
}

impl Located {
    /// The backup in the folder `dir`.
    pub fn at(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
            _download: None,
        }
    }
}

/// Restores the dump in `dir` (described by `manifest`) into `target` and
/// compares every table with the manifest.
pub async fn restore(
    dir: &Path,
    manifest: &Manifest,
    target: &Target,
    force: bool,
) -> Result<Vec<Check>, OpsError> {
    let dump = verify_dump(dir, manifest)?;
    let client = target.connect().await?;
    if !force {
        refuse_data(&pg::tables(&client, false).await?, target)?;
    }
    let server = pg::server_version(&client).await?;
    let pg_restore = pg::find_tool("pg_restore", server.major)?;
    let args: Vec<OsString> = vec![
        "--clean".into(),
        "--if-exists".into(),
        "--no-owner".into(),
        "--single-transaction".into(),
        "--exit-on-error".into(),
        format!("--dbname={}", conninfo_dbname(target.dbname())).into(),
        dump.into_os_string(),
    ];
    pg::run(&pg_restore, &args, target).await?;
    let checksums = manifest.tables.iter().any(|t| t.checksum.is_some());
    let restored = pg::tables(&client, checksums).await?;
    Ok(compare(&manifest.tables, &restored))
}

/// The dump's path, once its sha256 matches the manifest's.
fn verify_dump(dir: &Path, manifest: &Manifest) -> Result<PathBuf, OpsError> {
    let entry = manifest.file(DUMP).ok_or_else(|| {
        OpsError::Backup(format!("the manifest of {} lists no {DUMP}", manifest.id))
    })?;
    let path = dir.join(DUMP);
    if !path.is_file() {
        return Err(OpsError::Backup(format!("{} is missing", path.display())));
    }
    let (_, actual) = archive::sha256(&path)?;
    if actual != entry.sha256 {
        return Err(OpsError::Checksum {
            file: path.display().to_string(),
            expected: entry.sha256.clone(),
            actual,
        });
    }
    Ok(path)
}

/// Refuses a target with rows in any `public` table.
fn refuse_data(tables: &[TableStat], target: &Target) -> Result<(), OpsError> {
    let holding: Vec<String> = tables
        .iter()
        .filter(|t| t.rows > 0)
        .map(|t| {
            format!(
                "{}: {} row{}",
                t.name,
                t.rows,
                if t.rows == 1 { "" } else { "s" }
            )
        })
        .collect();
    if holding.is_empty() {
        return Ok(());
    }
    Err(OpsError::Refused(format!(
        "the target database {} holds data ({}); restoring would replace it: add --force to do so",
        target.describe(),
        holding.join(", ")
    )))
}

/// A libpq connection string naming only the database (the rest comes from
/// the environment), so no database name is taken for a connection string.
fn conninfo_dbname(name: &str) -> String {
    format!(
        "dbname='{}'",
        name.replace('\\', "\\\\").replace('\'', "\\'")
    )
}

/// Each table of the backup and of the restored database, side by side.
pub fn compare(backup: &[TableStat], restored: &[TableStat]) -> Vec<Check> {
    let mut names: Vec<&str> = backup
        .iter()
        .chain(restored)
        .map(|t| t.name.as_str())
        .collect();
    names.sort_unstable();
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            let b = backup.iter().find(|t| t.name == name);
            let r = restored.iter().find(|t| t.name == name);
            let status = match (b, r) {
                (None, _) => "not in backup",
                (_, None) => "missing",
                (Some(b), Some(r)) if b.rows == r.rows && b.checksum == r.checksum => "identical",
                _ => "differs",
            };
            Check {
                table: name.to_owned(),
                backup_rows: b.map(|t| t.rows),
                restored_rows: r.map(|t| t.rows),
                backup_checksum: b.and_then(|t| t.checksum.clone()),
                restored_checksum: r.and_then(|t| t.checksum.clone()),
                status,
            }
        })
        .collect()
}

/// Ok when every table is identical, Warn when the target also has tables
/// the backup has not, Fail otherwise.
pub fn outcome(checks: &[Check]) -> Outcome {
    checks
        .iter()
        .map(|c| match c.status {
            "identical" => Outcome::Ok,
            "not in backup" => Outcome::Warn,
            _ => Outcome::Fail,
        })
        .max()
        .unwrap_or(Outcome::Ok)
}

/// The comparison as a table (with checksum columns when there are any).
pub fn checks_table(title: &str, checks: &[Check]) -> Table {
    let with_sums = checks.iter().any(|c| c.backup_checksum.is_some());
    let mut columns = vec!["table", "backup rows", "restored rows"];
    if with_sums {
        columns.extend(["backup checksum", "restored checksum"]);
    }
    columns.push("status");
    let mut table = Table::new(title, &columns);
    let cell = |n: Option<i64>| n.map(|n| n.to_string()).unwrap_or_else(|| "-".into());
    let sum = |s: &Option<String>| {
        s.as_deref()
            .map_or("-".into(), |s| s.chars().take(12).collect())
    };
    for c in checks {
        let mut row = vec![c.table.clone(), cell(c.backup_rows), cell(c.restored_rows)];
        if with_sums {
            row.extend([sum(&c.backup_checksum), sum(&c.restored_checksum)]);
        }
        row.push(c.status.to_owned());
        table.push(row);
    }
    table
}

fn report(title: &str, checks: &[Check]) -> Report {
    Report {
        outcome: outcome(checks),
        tables: vec![checks_table(title, checks)],
        json: json!({ "title": title, "tables": checks }),
        csv: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(name: &str, rows: i64, checksum: Option<&str>) -> TableStat {
        TableStat {
            name: name.into(),
            rows,
            checksum: checksum.map(str::to_owned),
        }
    }

    #[test]
    fn tables_compare_by_rows_and_checksum() {
        let backup = [
            stat("a", 2, Some("x")),
            stat("b", 1, Some("y")),
            stat("c", 0, None),
        ];
        let restored = [
            stat("a", 2, Some("x")),
            stat("b", 1, Some("z")),
            stat("d", 5, None),
        ];
        let checks = compare(&backup, &restored);
        let statuses: Vec<(&str, &str)> = checks
            .iter()
            .map(|c| (c.table.as_str(), c.status))
            .collect();
        assert_eq!(
            statuses,
            [
                ("a", "identical"),
                ("b", "differs"),
                ("c", "missing"),
                ("d", "not in backup")
            ]
        );
        assert_eq!(outcome(&checks), Outcome::Fail);
        assert_eq!(outcome(&checks[..1]), Outcome::Ok);
        assert_eq!(
            outcome(&[checks[0].clone(), checks[3].clone()]),
            Outcome::Warn
        );
    }

    #[test]
    fn database_names_are_quoted_for_libpq() {
        assert_eq!(conninfo_dbname("chat"), "dbname='chat'");
        assert_eq!(conninfo_dbname("a'b=c"), r"dbname='a\'b=c'");
    }
}
