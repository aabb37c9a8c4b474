//! `chatbot-ops backup`: the operations documentation's backup procedure.
//!
//! 1. `pg_dump -Fc` of the database, by the `pg_dump` of the server's major
//!    version, inside a snapshot that also yields the row count of every
//!    table (so the counts in the manifest are exactly what the dump holds,
//!    however busy the database is);
//! 2. `logs.tar.gz` of `log.dir` (when set) and `config.tar.gz` of
//!    `ops.backup.config_dir`;
//! 3. with `ops.backup.s3.bucket` set, every file uploaded and checked, then
//!    the manifest, last;
//! 4. `manifest.json` with `"complete": true` written locally, last;
//! 5. retention ([`crate::retention`]), locally and in the bucket.
//!
//! A failure before step 3 removes the new folder; a failed upload leaves
//! the local backup with `"complete": false` and the reason in its manifest.
//! Either way the command exits non-zero.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use chatbot_common::config::Settings;
use chrono::{DateTime, Utc};
use serde_json::json;
use tokio_postgres::{Client, IsolationLevel};

use crate::archive;
use crate::catalog::{self, MANIFEST};
use crate::error::OpsError;
use crate::manifest::{self, CONFIG, DUMP, FileEntry, LOGS, Manifest, Versions};
use crate::output::{Outcome, Report, Table};
use crate::pg::{self, ServerVersion, TableStat, Target, Tool};
use crate::retention::{self, Deleted, Policy};
use crate::store::Bucket;

/// A finished backup.
#[derive(Debug)]
pub struct Done {
    /// Its manifest.
    pub manifest: Manifest,
    /// Its local folder.
    pub dir: PathBuf,
    /// The bucket it was uploaded to, if any.
    pub bucket: Option<Bucket>,
    /// What retention deleted afterwards.
    pub retention: Vec<Deleted>,
}

/// The database being backed up.
struct Source {
    target: Target,
    client: Client,
    server: ServerVersion,
    pg_dump: Tool,
}

/// Runs `chatbot-ops backup`.
pub async fn run(settings: &Settings) -> Result<Report, OpsError> {
    let done = create(settings, false).await?;
    Ok(report(&done))
}

/// Makes a backup (with per-table checksums in its manifest when
/// `checksums`), uploads it when a bucket is configured, applies retention.
pub async fn create(settings: &Settings, checksums: bool) -> Result<Done, OpsError> {
    let config = &settings.ops.backup;
    let bucket = Bucket::from_settings(&config.s3)?;
    let mut source = open(settings).await?;
    let (started, dir) = new_folder(&config.dir, bucket.as_ref()).await?;
    let (files, tables) = match write_files(settings, &mut source, &dir, checksums).await {
        Ok(written) => written,
        Err(e) => {
            let _ = retention::remove_local(&dir, &manifest::KNOWN.map(str::to_owned), true);
            return Err(e);
        }
    };
    let mut manifest = Manifest {
        id: catalog::id(started),
        complete: false,
        started,
        finished: Utc::now(),
        database: source.target.dbname().to_owned(),
        versions: Versions {
            chatbot_ops: env!("CARGO_PKG_VERSION").to_owned(),
            server: source.server.text.clone(),
            pg_dump: source.pg_dump.version.clone(),
        },
        files,
        tables,
        uploaded_to: None,
        error: None,
    };
    finish(bucket.as_ref(), &dir, &mut manifest).await?;
    let retention = prune(settings, bucket.as_ref()).await.map_err(|e| {
        OpsError::Backup(format!(
            "backup {} is complete, but retention failed: {e}",
            manifest.id
        ))
    })?;
    Ok(Done {
        manifest,
        dir,
        bucket,
        retention,
    })
}

/// Connects to the database and finds the matching `pg_dump`.
async fn open(settings: &Settings) -> Result<Source, OpsError> {
    let target = Target::from_settings(&settings.database)?;
    let client = target.connect().await?;
    let server = pg::server_version(&client).await?;
    let pg_dump = pg::find_tool("pg_dump", server.major)?;
    Ok(Source {
        target,
        client,
        server,
        pg_dump,
    })
}

/// A new backup folder under `root`, named by its start time; a second
/// backup within the same second (here, or already in `bucket`: the local
/// copy may be gone) waits for the next one, so no backup overwrites another.
async fn new_folder(
    root: &Path,
    bucket: Option<&Bucket>,
) -> Result<(DateTime<Utc>, PathBuf), OpsError> {
    let fail = |dir: &Path, e| OpsError::io(format!("creating {}", dir.display()), e);
    std::fs::create_dir_all(root).map_err(|e| fail(root, e))?;
    let mut attempts = 3;
    loop {
        let started = Utc::now();
        let id = catalog::id(started);
        let dir = root.join(&id);
        let in_bucket = match bucket {
            Some(bucket) => bucket.manifest(&id).await?.is_some(),
            None => false,
        };
        let created = if in_bucket {
            Err(std::io::ErrorKind::AlreadyExists.into())
        } else {
            std::fs::create_dir(&dir)
        };
        match created {
            Ok(()) => return Ok((started, dir)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempts > 1 => {
                attempts -= 1;
                let rest = 1_000 - started.timestamp_subsec_millis().min(999);
                tokio::time::sleep(std::time::Duration::from_millis(rest.into())).await;
            }
            Err(e) => return Err(fail(&dir, e)),
        }
    }
}

/// The dump and the archives in `dir`; their entries and the tables.
async fn write_files(
    settings: &Settings,
    source: &mut Source,
    dir: &Path,
    checksums: bool,
) -> Result<(Vec<FileEntry>, Vec<TableStat>), OpsError> {
    let tables = dump(source, &dir.join(DUMP), checksums).await?;
    let mut names = vec![DUMP];
    if let Some(logs) = &settings.log.dir {
        archive::tar_gz(logs, "logs", &dir.join(LOGS))?;
        names.push(LOGS);
    }
    archive::tar_gz(&settings.ops.backup.config_dir, "config", &dir.join(CONFIG))?;
    names.push(CONFIG);
    let files = names
        .into_iter()
        .map(|name| {
            let (size, sha256) = archive::sha256(&dir.join(name))?;
            Ok(FileEntry {
                name: name.to_owned(),
                size,
                sha256,
            })
        })
        .collect::<Result<_, OpsError>>()?;
    Ok((files, tables))
}

/// `pg_dump -Fc` into `dest` from a snapshot exported by a read-only
/// transaction in which the tables are counted meanwhile.
async fn dump(
    source: &mut Source,
    dest: &Path,
    checksums: bool,
) -> Result<Vec<TableStat>, OpsError> {
    let db = |e: tokio_postgres::Error| OpsError::database(&e);
    let tx = source
        .client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(db)?;
    let snapshot: String = tx
        .query_one("SELECT pg_export_snapshot()", &[])
        .await
        .map_err(db)?
        .get(0);
    let args: Vec<OsString> = vec![
        "--format=custom".into(),
        format!("--snapshot={snapshot}").into(),
        [OsString::from("--file="), dest.as_os_str().to_owned()]
            .into_iter()
            .collect(),
    ];
    let (tables, dumped) = tokio::join!(
        pg::tables(&tx, checksums),
        pg::run(&source.pg_dump, &args, &source.target)
    );
    dumped?;
    let tables = tables?;
    tx.commit().await.map_err(db)?;
    Ok(tables)
}

/// Uploads (with a bucket), then writes the local manifest: complete, or
/// not with the reason when the upload failed.
async fn finish(
    bucket: Option<&Bucket>,
    dir: &Path,
    manifest: &mut Manifest,
) -> Result<(), OpsError> {
    let uploaded = match bucket {
        Some(bucket) => upload(bucket, dir, manifest).await,
        None => Ok(()),
    };
    manifest.complete = uploaded.is_ok();
    if let Err(e) = &uploaded {
        manifest.uploaded_to = None;
        manifest.error = Some(e.to_string());
    }
    manifest::write(dir, manifest)?;
    uploaded.map_err(|e| {
        OpsError::Backup(format!(
            "{e}; the local backup {} is kept but not marked complete",
            dir.display()
        ))
    })
}

/// Uploads every file, then the manifest saying it is complete.
async fn upload(bucket: &Bucket, dir: &Path, manifest: &mut Manifest) -> Result<(), OpsError> {
    for file in &manifest.files {
        bucket
            .upload(&manifest.id, &file.name, &dir.join(&file.name))
            .await?;
    }
    manifest.complete = true;
    manifest.finished = Utc::now();
    manifest.uploaded_to = Some(bucket.url(&manifest.id));
    bucket.put_manifest(manifest).await
}

/// Retention, locally and in the bucket.
async fn prune(settings: &Settings, bucket: Option<&Bucket>) -> Result<Vec<Deleted>, OpsError> {
    let config = &settings.ops.backup;
    let policy = Policy {
        dump_days: config.dump_retention_days,
        archive_days: config.archive_retention_days,
    };
    let now = Utc::now();
    let mut deleted = retention::apply_locally(&config.dir, now, policy)?;
    if let Some(bucket) = bucket {
        deleted.extend(retention::apply_to_bucket(bucket, now, policy).await?);
    }
    Ok(deleted)
}

/// The files table, the retention table when something was deleted, and
/// the JSON document.
pub fn report(done: &Done) -> Report {
    let m = &done.manifest;
    let uploaded = |name: &str| match &done.bucket {
        Some(bucket) => format!("{}{name}", bucket.url(&m.id)),
        None => "no".to_owned(),
    };
    let mut files = Table::new(
        &format!("backup {} in {}", m.id, done.dir.display()),
        &["file", "size", "sha256", "uploaded"],
    );
    for file in &m.files {
        files.push([
            file.name.clone(),
            human_size(file.size),
            file.sha256.chars().take(12).collect(),
            uploaded(&file.name),
        ]);
    }
    let manifest_size = std::fs::metadata(done.dir.join(MANIFEST)).map_or(0, |m| m.len());
    files.push([
        MANIFEST.to_owned(),
        human_size(manifest_size),
        String::new(),
        uploaded(MANIFEST),
    ]);
    let mut tables = vec![files];
    if !done.retention.is_empty() {
        let mut deleted = Table::new("retention", &["where", "backup", "deleted", "why"]);
        for d in &done.retention {
            let what = if d.action.whole {
                "everything".to_owned()
            } else {
                d.action.files.join(", ")
            };
            deleted.push([
                d.place.clone(),
                d.action.id.clone(),
                what,
                d.action.reason.clone(),
            ]);
        }
        tables.push(deleted);
    }
    Report {
        outcome: Outcome::Ok,
        tables,
        json: json!({
            "dir": done.dir,
            "manifest": m,
            "retention": done.retention,
        }),
        csv: false,
    }
}

/// `1.5 MiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut size = bytes as f64 / 1024.0;
    let mut unit = 0;
    while size >= 1024.0 && unit + 1 < UNITS.len() {
        size /= 1024.0;
        unit += 1;
    }
    format!("{size:.1} {}", UNITS[unit])
}
