//! `chatbot-ops backup`, `restore` and `drill` run as processes against a
//! real throwaway PostgreSQL (seeded over several days, users, urgencies and
//! errors) and a real S3-compatible server (moto): what a person or a timer
//! sees, exit codes, one-line errors, and the rows that come back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use chatbot_ops::catalog;
use chrono::{Duration, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use test_support::app::connect;
use test_support::process::Run;
use test_support::{TestS3, free_port, shared_postgres};

const SEED: &str = include_str!("../../../scripts/seed-messages.sql");
const BUCKET: &str = "chatbot-backups";
const PREFIX: &str = "chatbot/";
const FILES: [&str; 4] = [
    "config.tar.gz",
    "database.dump",
    "logs.tar.gz",
    "manifest.json",
];

/// A database with the chat schema and `rows` seeded messages.
async fn seeded_database(rows: u32) -> String {
    let url = support::migrated_database().await;
    connect(&url)
        .await
        .batch_execute(&SEED.replace(":rows", &rows.to_string()))
        .await
        .unwrap();
    url
}

/// Every row of every `public` table, as text, per table.
async fn contents(url: &str) -> BTreeMap<String, Vec<String>> {
    let db = connect(url).await;
    db.batch_execute("SET TimeZone = 'UTC'").await.unwrap();
    let mut all = BTreeMap::new();
    for row in db
        .query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'",
            &[],
        )
        .await
        .unwrap()
    {
        let table: String = row.get(0);
        let sql = format!("SELECT t::text FROM public.\"{table}\" t ORDER BY 1");
        let rows = db.query(&sql, &[]).await.unwrap();
        all.insert(table, rows.iter().map(|r| r.get(0)).collect());
    }
    all
}

/// A place for backups, a configuration and a log directory to archive,
/// and the settings that point `chatbot-ops` at them and at a database.
struct Setup {
    tmp: tempfile::TempDir,
    url: String,
    env: Vec<(String, String)>,
}

impl Setup {
    fn new(url: &str) -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        for (file, text) in [
            ("etc/chatbot.toml", "[chat]\nmodel = \"llama3.2:1b\"\n"),
            ("etc/secrets/readme", "kept by the platform\n"),
            (
                "logs/chat.log",
                "{\"level\":\"INFO\",\"msg\":\"started\"}\n",
            ),
            ("logs/chat.error.log", ""),
        ] {
            let path = tmp.path().join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let path = |p: &str| tmp.path().join(p).display().to_string();
        let env = vec![
            ("CHATBOT__OPS__BACKUP__DIR".to_owned(), path("backups")),
            ("CHATBOT__OPS__BACKUP__CONFIG_DIR".to_owned(), path("etc")),
            ("CHATBOT__LOG__DIR".to_owned(), path("logs")),
        ];
        Setup {
            tmp,
            url: url.to_owned(),
            env,
        }
    }

    fn with_s3(mut self, s3: &TestS3, bucket: &str) -> Setup {
        self.env.extend(s3.settings_env(bucket, PREFIX));
        self
    }

    fn backups(&self) -> PathBuf {
        self.tmp.path().join("backups")
    }

    /// The ids of the local backup folders, oldest first.
    fn ids(&self) -> Vec<String> {
        catalog::list(&self.backups())
            .into_iter()
            .map(|b| b.id)
            .collect()
    }

    /// Runs `chatbot-ops ARGS`.
    fn run(&self, args: &[&str]) -> Run {
        let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config");
        let output = Command::new(env!("CARGO_BIN_EXE_chatbot-ops"))
            .args(args)
            .env("CHATBOT_CONFIG_DIR", config)
            .env("CHATBOT__DATABASE__URL", &self.url)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        Run::from(output)
    }

    /// `backup`, which must succeed; the new backup's id.
    fn backup(&self) -> String {
        let before = self.ids();
        let run = self.run(&["backup"]);
        assert_eq!(run.code, 0, "{run:?}");
        let new: Vec<String> = self
            .ids()
            .into_iter()
            .filter(|id| !before.contains(id))
            .collect();
        assert_eq!(new.len(), 1, "{run:?}");
        new[0].clone()
    }
}

/// An error a person sees: one line, naming the tool.
fn one_line_error(run: &Run) -> &str {
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    assert!(run.stderr.starts_with("chatbot-ops: "), "{run:?}");
    run.stderr.trim_end()
}

fn manifest(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The tables of the `public` schema of `url`.
async fn table_names(url: &str) -> Vec<String> {
    connect(url)
        .await
        .query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_in_the_bucket_restores_every_row_and_the_drill_finds_them_identical() {
    let s3 = TestS3::start();
    s3.create_bucket(BUCKET).await;
    let url = seeded_database(400).await;
    let setup = Setup::new(&url).with_s3(&s3, BUCKET);
    let before = contents(&url).await;
    assert_eq!(before["messages"].len(), 400);

    // The backup: a table of its files, each uploaded.
    let run = setup.run(&["backup"]);
    assert_eq!(run.code, 0, "{run:?}");
    let id = setup.ids().pop().unwrap();
    let folder = setup.backups().join(&id);
    for file in FILES {
        let uploaded = format!("s3://{BUCKET}/{PREFIX}{id}/{file}");
        assert!(
            run.stdout
                .lines()
                .any(|l| l.starts_with(file) && l.ends_with(&uploaded)),
            "{file}: {}",
            run.stdout
        );
    }
    assert!(run.stdout.ends_with("result: OK\n"), "{}", run.stdout);

    // The manifest: complete, checksums of the files, rows per table, versions.
    let m = manifest(&folder);
    assert_eq!(m["complete"], true);
    assert_eq!(m["id"], id);
    for entry in m["files"].as_array().unwrap() {
        let bytes = std::fs::read(folder.join(entry["name"].as_str().unwrap())).unwrap();
        assert_eq!(entry["size"], bytes.len());
        assert_eq!(entry["sha256"], sha256_hex(&bytes));
    }
    let rows: BTreeMap<&str, i64> = m["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["name"].as_str().unwrap(), t["rows"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        rows,
        BTreeMap::from([("api_keys", 0), ("messages", 400), ("schema_migrations", 3)])
    );
    assert!(
        m["versions"]["pg_dump"]
            .as_str()
            .unwrap()
            .starts_with("pg_dump (PostgreSQL) ")
    );
    assert_eq!(m["versions"]["chatbot_ops"], env!("CARGO_PKG_VERSION"));

    // The bucket holds the same four files, byte for byte.
    let keys = s3.keys(BUCKET).await;
    let expected: Vec<(String, u64)> = FILES
        .iter()
        .map(|f| {
            let size = std::fs::metadata(folder.join(f)).unwrap().len();
            (format!("{PREFIX}{id}/{f}"), size)
        })
        .collect();
    assert_eq!(keys, expected);
    let remote = s3
        .get(BUCKET, &format!("{PREFIX}{id}/manifest.json"))
        .await
        .unwrap();
    assert_eq!(remote, std::fs::read(folder.join("manifest.json")).unwrap());

    // The database is lost, and so is the local copy: restored from the bucket.
    connect(&url)
        .await
        .batch_execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        .await
        .unwrap();
    std::fs::remove_dir_all(&folder).unwrap();
    let run = setup.run(&["restore", "--from", &id]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["messages", "400", "400", "identical"]),
        "{}",
        run.stdout
    );
    assert_eq!(contents(&url).await, before);

    // Restoring over data needs --force.
    let run = setup.run(&["restore", "--from", &id]);
    assert_eq!(run.code, 2, "{run:?}");
    let error = one_line_error(&run);
    assert!(error.contains("holds data (messages: 400 rows"), "{error}");
    assert!(error.contains("--force"), "{error}");
    let run = setup.run(&["restore", "--from", &id, "--force"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(contents(&url).await, before);

    // The weekly drill: a second backup, restored from the bucket into a
    // scratch database that is gone afterwards, every table identical.
    let run = setup.run(&["drill", "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    let tables: Vec<(&str, &str)> = report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["table"].as_str().unwrap(), t["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        tables,
        [
            ("api_keys", "identical"),
            ("messages", "identical"),
            ("schema_migrations", "identical")
        ]
    );
    assert!(report["tables"][0]["backup_checksum"].is_string());
    let scratch = report["scratch_database"].as_str().unwrap();
    let left = connect(&url)
        .await
        .query("SELECT 1 FROM pg_database WHERE datname = $1", &[&scratch])
        .await
        .unwrap();
    assert!(left.is_empty(), "{scratch} was not dropped");
    assert_eq!(s3.keys(BUCKET).await.len(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_exactly_the_expired_backups_locally_and_in_the_bucket() {
    let s3 = TestS3::start();
    s3.create_bucket(BUCKET).await;
    let url = seeded_database(20).await;
    let setup = Setup::new(&url).with_s3(&s3, BUCKET);

    // Older backups, made by hand in both places: (age, complete manifest?).
    let now = Utc::now();
    let old = |age: Duration| catalog::id(now - age);
    let expired = old(Duration::days(40));
    let archives_expired = old(Duration::days(10));
    let recent = old(Duration::days(3));
    let stale_partial = old(Duration::days(2));
    let running = old(Duration::hours(2));
    let good = br#"{"complete": true}"#.to_vec();
    let made: [(&String, Option<&Vec<u8>>); 5] = [
        (&expired, Some(&good)),
        (&archives_expired, Some(&good)),
        (&recent, Some(&good)),
        (&stale_partial, None),
        (&running, None),
    ];
    for (id, manifest) in made {
        let folder = setup.backups().join(id);
        std::fs::create_dir_all(&folder).unwrap();
        for file in &FILES[..3] {
            std::fs::write(folder.join(file), b"old").unwrap();
            s3.put(BUCKET, &format!("{PREFIX}{id}/{file}"), b"old".to_vec())
                .await;
        }
        if let Some(manifest) = manifest {
            std::fs::write(folder.join("manifest.json"), manifest).unwrap();
            s3.put(
                BUCKET,
                &format!("{PREFIX}{id}/manifest.json"),
                manifest.clone(),
            )
            .await;
        }
    }
    // Things that are not ours.
    std::fs::create_dir_all(setup.backups().join("notes")).unwrap();
    std::fs::write(setup.backups().join(&expired).join("README"), b"mine").unwrap();
    for key in [
        format!("{PREFIX}readme.txt"),
        format!("{PREFIX}{expired}/extra.bin"),
        format!("elsewhere/{expired}/database.dump"),
    ] {
        s3.put(BUCKET, &key, b"not ours".to_vec()).await;
    }

    let run = setup.run(&["backup"]);
    assert_eq!(run.code, 0, "{run:?}");
    for reason in [
        "dump older than 30 days",
        "archives older than 7 days",
        "incomplete and more than a day old",
    ] {
        assert!(run.stdout.contains(reason), "{reason}: {}", run.stdout);
    }
    let new = setup.ids().pop().unwrap();

    // What is left, locally and in the bucket: exactly the same backups.
    let all: BTreeSet<&str> = FILES.into_iter().collect();
    let dump_only: BTreeSet<&str> = ["database.dump", "manifest.json"].into();
    let partial: BTreeSet<&str> = ["config.tar.gz", "database.dump", "logs.tar.gz"].into();
    let expected: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::from([
        (archives_expired.as_str(), dump_only),
        (recent.as_str(), all.clone()),
        (running.as_str(), partial),
        (new.as_str(), all),
    ]);
    let mut local: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for entry in std::fs::read_dir(setup.backups()).unwrap() {
        let entry = entry.unwrap();
        let files = std::fs::read_dir(entry.path())
            .unwrap()
            .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        local.insert(entry.file_name().to_string_lossy().into_owned(), files);
    }
    let mut expected_local: BTreeMap<String, BTreeSet<String>> = expected
        .iter()
        .map(|(id, files)| {
            (
                id.to_string(),
                files.iter().map(|f| f.to_string()).collect(),
            )
        })
        .collect();
    expected_local.insert("notes".into(), BTreeSet::new());
    expected_local.insert(expired.clone(), ["README".to_owned()].into());
    assert_eq!(local, expected_local);

    let mut expected_keys: BTreeSet<String> = expected
        .iter()
        .flat_map(|(id, files)| files.iter().map(move |f| format!("{PREFIX}{id}/{f}")))
        .collect();
    expected_keys.extend([
        format!("{PREFIX}readme.txt"),
        format!("{PREFIX}{expired}/extra.bin"),
        format!("elsewhere/{expired}/database.dump"),
    ]);
    let keys: BTreeSet<String> = s3.keys(BUCKET).await.into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, expected_keys);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_upload_fails_the_backup_and_leaves_it_incomplete() {
    let s3 = TestS3::start();
    let url = seeded_database(10).await;
    let setup = Setup::new(&url).with_s3(&s3, "no-such-bucket");

    let run = setup.run(&["backup"]);
    assert_eq!(run.code, 2, "{run:?}");
    let error = one_line_error(&run);
    assert!(error.contains("s3://no-such-bucket/chatbot/"), "{error}");
    assert!(error.contains("is kept but not marked complete"), "{error}");
    let id = setup.ids().pop().unwrap();
    let m = manifest(&setup.backups().join(&id));
    assert_eq!(m["complete"], false);
    assert!(
        m["error"].as_str().unwrap().contains("no-such-bucket"),
        "{m}"
    );
    assert_eq!(catalog::newest_good(&setup.backups()), None);

    // A backup that is nowhere: one line naming the bucket.
    let run = setup.run(&["restore", "--from", "20200101T000000Z"]);
    assert_eq!(run.code, 2, "{run:?}");
    let error = one_line_error(&run);
    assert!(
        error.contains("backup 20200101T000000Z not found"),
        "{error}"
    );
    assert!(
        error.contains("s3://no-such-bucket/chatbot/20200101T000000Z/"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_backups_are_refused_with_one_line_and_nothing_is_restored() {
    let url = seeded_database(300).await;
    let setup = Setup::new(&url);
    let id = setup.backup();
    let good = setup.backups().join(&id);
    let copy = |name: &str| {
        let dir = setup.tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(&good).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
        }
        dir
    };
    let target = shared_postgres().fresh_database().await;
    let restore = |dir: &Path| {
        setup.run(&[
            "restore",
            "--from",
            dir.to_str().unwrap(),
            "--target-url",
            &target,
        ])
    };

    // Flipped bytes: the checksum says so before anything is touched.
    let corrupt = copy("corrupt");
    let mut dump = std::fs::read(corrupt.join("database.dump")).unwrap();
    let middle = dump.len() / 2;
    for byte in &mut dump[middle..middle + 16] {
        *byte ^= 0xff;
    }
    std::fs::write(corrupt.join("database.dump"), &dump).unwrap();
    let run = restore(&corrupt);
    assert_eq!(run.code, 2, "{run:?}");
    let error = one_line_error(&run);
    assert!(
        error.starts_with("chatbot-ops: checksum mismatch: "),
        "{error}"
    );
    assert!(error.ends_with("nothing was restored"), "{error}");
    assert!(table_names(&target).await.is_empty());

    // Truncated, with a manifest edited to match: pg_restore's own error,
    // and its single transaction leaves nothing behind.
    let truncated = copy("truncated");
    let mut dump = std::fs::read(truncated.join("database.dump")).unwrap();
    dump.truncate(dump.len() * 6 / 10);
    std::fs::write(truncated.join("database.dump"), &dump).unwrap();
    let mut m = manifest(&truncated);
    for entry in m["files"].as_array_mut().unwrap() {
        if entry["name"] == "database.dump" {
            entry["sha256"] = json!(sha256_hex(&dump));
            entry["size"] = json!(dump.len());
        }
    }
    std::fs::write(truncated.join("manifest.json"), m.to_string()).unwrap();
    let run = restore(&truncated);
    assert_eq!(run.code, 2, "{run:?}");
    let error = one_line_error(&run);
    assert!(
        error.starts_with("chatbot-ops: pg_restore failed: "),
        "{error}"
    );
    assert!(table_names(&target).await.is_empty());

    // No manifest: not a finished backup.
    let unfinished = copy("unfinished");
    std::fs::remove_file(unfinished.join("manifest.json")).unwrap();
    let run = restore(&unfinished);
    assert_eq!(run.code, 2, "{run:?}");
    let error = one_line_error(&run);
    assert!(
        error.ends_with("has no manifest.json: not a finished backup"),
        "{error}"
    );
    assert!(table_names(&target).await.is_empty());

    // The intact backup restores into the same, still empty, database.
    let run = restore(&good);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(contents(&target).await, contents(&url).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_drill_reports_every_table_and_drops_its_scratch_database() {
    let url = seeded_database(50).await;
    let setup = Setup::new(&url);
    let run = setup.run(&["drill"]);
    assert_eq!(run.code, 0, "{run:?}");
    let lines: Vec<Vec<&str>> = run
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let messages = lines
        .iter()
        .find(|l| l.first() == Some(&"messages"))
        .unwrap();
    assert_eq!(messages[1..3], ["50", "50"], "{}", run.stdout);
    assert_eq!(messages[3], messages[4], "checksums: {}", run.stdout);
    assert_eq!(messages.last(), Some(&"identical"));
    assert!(run.stdout.ends_with("result: OK\n"), "{}", run.stdout);
    let left = connect(&url)
        .await
        .query(
            "SELECT datname FROM pg_database WHERE datname LIKE 'chatbot_drill_%'",
            &[],
        )
        .await
        .unwrap();
    assert!(left.is_empty());
    assert!(catalog::newest_good(&setup.backups()).is_some());
}

#[test]
fn an_unreachable_database_is_one_line_and_exit_3() {
    let url = format!("postgres://chatbot@127.0.0.1:{}/chatbot", free_port());
    let setup = Setup::new(&url);
    for command in ["backup", "drill"] {
        let run = setup.run(&[command]);
        assert_eq!(run.code, 3, "{run:?}");
        let error = one_line_error(&run);
        assert!(
            error.starts_with("chatbot-ops: PostgreSQL: 127.0.0.1:"),
            "{error}"
        );
    }
    assert!(setup.ids().is_empty(), "no backup folder is left behind");

    // A restore checks its backup first, then fails on the database.
    let folder = setup.tmp.path().join("backup");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("database.dump"), b"dump").unwrap();
    let m = json!({
        "id": "20261201T020000Z", "complete": true,
        "started": "2026-12-01T02:00:00Z", "finished": "2026-12-01T02:00:01Z",
        "database": "chatbot",
        "versions": {"chatbot_ops": "0", "server": "15", "pg_dump": "15"},
        "files": [{"name": "database.dump", "size": 4, "sha256": sha256_hex(b"dump")}],
        "tables": [],
    });
    std::fs::write(folder.join("manifest.json"), m.to_string()).unwrap();
    let run = setup.run(&["restore", "--from", folder.to_str().unwrap()]);
    assert_eq!(run.code, 3, "{run:?}");
    assert!(one_line_error(&run).starts_with("chatbot-ops: PostgreSQL: 127.0.0.1:"));
}
