//! PostgreSQL for backups: where to connect, the server's version, the
//! `pg_dump`/`pg_restore` of the same major version, and per-table figures.
//!
//! The PostgreSQL programs get their connection from `PG*` environment
//! variables, never from the command line, so a password is not visible in
//! the process list.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use chatbot_common::config::DatabaseSettings;
use serde::{Deserialize, Serialize};
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::{Client, GenericClient, NoTls};

use crate::error::{OpsError, one_line};

/// How long connecting may take when the URL does not say.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Session settings that make `row::text` the same on every server and
/// connection, so table checksums compare.
const CANONICAL_SESSION: &str = "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; \
     SET IntervalStyle = 'postgres'; SET extra_float_digits = 1; SET bytea_output = 'hex'";

/// A database to connect to.
#[derive(Debug, Clone)]
pub struct Target {
    config: tokio_postgres::Config,
}

impl Target {
    /// The services' database (`database.url`, `database.password`).
    pub fn from_settings(settings: &DatabaseSettings) -> Result<Self, OpsError> {
        let mut target = Self::from_url(settings.url.expose())?;
        if let Some(password) = &settings.password {
            target.config.password(password.expose());
        }
        Ok(target)
    }

    /// A PostgreSQL URL or key=value connection string.
    pub fn from_url(url: &str) -> Result<Self, OpsError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|_| OpsError::Usage("not a valid PostgreSQL URL".into()))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        Ok(Self { config })
    }

    /// The same server and credentials, another database.
    pub fn with_dbname(&self, name: &str) -> Self {
        let mut config = self.config.clone();
        config.dbname(name);
        Self { config }
    }

    /// The database name.
    pub fn dbname(&self) -> &str {
        self.config
            .get_dbname()
            .or(self.config.get_user())
            .unwrap_or("")
    }

    /// `host:port/database`, for messages (no credentials).
    pub fn describe(&self) -> String {
        let host = self.hosts().unwrap_or_else(|| "localhost".into());
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!("{host}:{port}/{}", self.dbname())
    }

    /// Connects, with the session settings checksums rely on.
    pub async fn connect(&self) -> Result<Client, OpsError> {
        let unreachable = |e: tokio_postgres::Error| {
            let chain = chatbot_common::error::ErrorChain(&e).to_string();
            OpsError::Database(format!("{}: {chain}", self.describe()))
        };
        let (client, connection) = self.config.connect(NoTls).await.map_err(unreachable)?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
            .batch_execute(CANONICAL_SESSION)
            .await
            .map_err(unreachable)?;
        Ok(client)
    }

    /// The `PG*` variables that point libpq programs at this database.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let c = &self.config;
        let mut env = vec![("PGDATABASE", self.dbname().to_owned())];
        let optional = [
            ("PGHOST", self.hosts()),
            ("PGPORT", join(c.get_ports())),
            ("PGUSER", c.get_user().map(str::to_owned)),
            (
                "PGPASSWORD",
                c.get_password()
                    .map(|p| String::from_utf8_lossy(p).into_owned()),
            ),
            ("PGSSLMODE", Some(ssl_mode(c.get_ssl_mode()).to_owned())),
            (
                "PGCONNECT_TIMEOUT",
                c.get_connect_timeout()
                    .map(|t| t.as_secs().max(1).to_string()),
            ),
            ("PGOPTIONS", c.get_options().map(str::to_owned)),
        ];
        env.extend(optional.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
        env
    }

    fn hosts(&self) -> Option<String> {
        let hosts: Vec<String> = self
            .config
            .get_hosts()
            .iter()
            .map(|h| match h {
                Host::Tcp(name) => name.clone(),
                Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        (!hosts.is_empty()).then(|| hosts.join(","))
    }
}

fn join(ports: &[u16]) -> Option<String> {
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    (!ports.is_empty()).then(|| ports.join(","))
}

fn ssl_mode(mode: SslMode) -> &'static str {
    match mode {
        SslMode::Disable => "disable",
        SslMode::Require => "require",
        _ => "prefer",
    }
}

/// The server's version: `server_version` and its major number.
#[derive(Debug, Clone)]
pub struct ServerVersion {
    /// As the server says it (`15.12 (Debian 15.12-0+deb12u2)`).
    pub text: String,
    /// The major version (15).
    pub major: u32,
}

/// Asks the server for its version.
pub async fn server_version(client: &impl GenericClient) -> Result<ServerVersion, OpsError> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version'), \
             current_setting('server_version_num')::int",
            &[],
        )
        .await
        .map_err(|e| OpsError::database(&e))?;
    let num: i32 = row.get(1);
    Ok(ServerVersion {
        text: row.get(0),
        major: u32::try_from(num / 10_000).unwrap_or(0),
    })
}

/// A PostgreSQL client program of a known version.
#[derive(Debug, Clone)]
pub struct Tool {
    /// Which program (`pg_dump`).
    pub name: &'static str,
    /// Where it is.
    pub path: PathBuf,
    /// What `--version` says (`pg_dump (PostgreSQL) 15.12 (Debian …)`).
    pub version: String,
}

/// Finds `name` for a server of major version `major`:
/// `/usr/lib/postgresql/<major>/bin/<name>`, else `<name>` on `PATH` when its
/// version matches.
pub fn find_tool(name: &'static str, major: u32) -> Result<Tool, OpsError> {
    let versioned = PathBuf::from(format!("/usr/lib/postgresql/{major}/bin/{name}"));
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|p| p.is_file());
    let mut seen = Vec::new();
    for path in std::iter::once(versioned).chain(on_path) {
        let Some(version) = tool_version(&path) else {
            continue;
        };
        if version_major(&version) == Some(major) {
            return Ok(Tool {
                name,
                path,
                version,
            });
        }
        seen.push(format!("{} is {version}", path.display()));
    }
    let seen = if seen.is_empty() {
        String::new()
    } else {
        format!(" ({})", seen.join("; "))
    };
    Err(OpsError::Usage(format!(
        "no {name} for PostgreSQL {major}: not in /usr/lib/postgresql/{major}/bin nor on PATH{seen}; \
         install the PostgreSQL {major} client programs (Debian/Ubuntu: postgresql-client-{major})"
    )))
}

/// `path --version`, when it runs.
fn tool_version(path: &Path) -> Option<String> {
    let out = std::process::Command::new(path)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The major version in `pg_dump (PostgreSQL) 15.12 (…)`.
pub fn version_major(version: &str) -> Option<u32> {
    version
        .split_whitespace()
        .nth(2)?
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Runs `tool` with `args` against `target`; its error message on failure.
pub async fn run(tool: &Tool, args: &[OsString], target: &Target) -> Result<(), OpsError> {
    let mut command = tokio::process::Command::new(&tool.path);
    // Only the target's settings count, not a PGHOST etc. of this shell.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            command.env_remove(key);
        }
    }
    let output = command
        .args(args)
        .arg("--no-password")
        .envs(target.env())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| OpsError::io(format!("running {}", tool.path.display()), e))?;
    if output.status.success() {
        return Ok(());
    }
    Err(OpsError::Tool {
        tool: tool.name,
        detail: failure(&String::from_utf8_lossy(&output.stderr), output.status),
    })
}

/// The first `error:` line of a PostgreSQL program's stderr, else its last
/// line, else the exit status.
fn failure(stderr: &str, status: std::process::ExitStatus) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let line = lines
        .iter()
        .find_map(|l| l.split_once("error: ").map(|(_, rest)| rest))
        .or(lines.last().copied());
    match line {
        Some(line) => one_line(line),
        None => format!("it exited with {status}"),
    }
}

/// One table's figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableStat {
    /// Its name in the `public` schema.
    pub name: String,
    /// Its rows.
    pub rows: i64,
    /// md5 over the sorted md5s of its rows' text (see [`tables`]), when asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
}

/// Every table of the `public` schema with its row count and, with
/// `checksums`, an order-independent checksum of its content: the md5 of the
/// sorted md5s of every row's text (32 bytes a row, so tables up to about
/// 30 million rows fit PostgreSQL's 1 GB value limit).
pub async fn tables(
    client: &impl GenericClient,
    checksums: bool,
) -> Result<Vec<TableStat>, OpsError> {
    let db = |e: tokio_postgres::Error| OpsError::database(&e);
    let names = client
        .query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
            &[],
        )
        .await
        .map_err(db)?;
    let mut stats = Vec::with_capacity(names.len());
    for row in names {
        let name: String = row.get(0);
        let table = format!("public.\"{}\"", name.replace('"', "\"\""));
        let sql = if checksums {
            format!(
                "SELECT count(*), md5(coalesce(string_agg(h, '' ORDER BY h), '')) \
                 FROM (SELECT md5(t::text) AS h FROM {table} t) s"
            )
        } else {
            format!("SELECT count(*), NULL::text FROM {table}")
        };
        let figures = client.query_one(&sql, &[]).await.map_err(db)?;
        stats.push(TableStat {
            name,
            rows: figures.get(0),
            checksum: figures.get(1),
        });
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn major_versions_are_read_from_version_lines() {
        assert_eq!(
            version_major("pg_dump (PostgreSQL) 15.12 (Debian 15.12-0+deb12u2)"),
            Some(15)
        );
        assert_eq!(version_major("pg_restore (PostgreSQL) 17beta1"), Some(17));
        assert_eq!(version_major("something else"), None);
    }

    #[test]
    fn the_password_goes_to_the_environment_only() {
        let target = Target::from_url("postgres://u:s3cret@db.example:6543/chat")
            .unwrap_or_else(|e| panic!("{e}"));
        let env = target.env();
        let get = |k: &str| {
            env.iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("PGPASSWORD"), Some("s3cret"));
        assert_eq!(get("PGHOST"), Some("db.example"));
        assert_eq!(get("PGPORT"), Some("6543"));
        assert_eq!(get("PGDATABASE"), Some("chat"));
        assert_eq!(target.describe(), "db.example:6543/chat");
        assert!(!target.describe().contains("s3cret"));
    }

    #[test]
    fn a_failed_program_is_summed_up_by_its_error_line() {
        let status = std::process::Command::new("false")
            .status()
            .unwrap_or_else(|e| panic!("{e}"));
        let stderr = "pg_restore: while PROCESSING TOC:\n\
                      pg_restore: error: could not read from input file: end of file\n";
        assert_eq!(
            failure(stderr, status),
            "could not read from input file: end of file"
        );
        assert!(failure("", status).starts_with("it exited with"));
    }
}
