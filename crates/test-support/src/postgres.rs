//! Throwaway PostgreSQL clusters for tests.
//!
//! [`TestPostgres::start`] runs `initdb` in a fresh directory under the
//! system's temporary directory and starts the cluster with `pg_ctl` on a free
//! port of 127.0.0.1 (never 5432), trust authentication and durability turned
//! off for speed. When the test process runs as root, `initdb` and `pg_ctl`
//! (which refuse root) are run as the `postgres` user through `runuser`.
//!
//! Use [`shared_postgres`] for one cluster per test process and
//! [`TestPostgres::fresh_database`] to isolate tests from each other; use a
//! dedicated [`TestPostgres`] when a test stops and restarts the server to
//! simulate an outage.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::{Mutex, OnceLock};

use tokio_postgres::NoTls;

use crate::util;
use crate::util::lock;

/// How many times [`TestPostgres::start`] tries a new port when the server
/// does not come up (another process may grab the free port first).
const START_ATTEMPTS: usize = 3;

/// A throwaway PostgreSQL cluster listening on `127.0.0.1:<port()>`.
///
/// The superuser is `postgres`, with trust authentication (no password).
/// Dropping it stops the server (`pg_ctl stop -m immediate`) and removes its
/// directory.
#[derive(Debug)]
pub struct TestPostgres {
    port: u16,
    /// Top directory: holds `data/`, the unix socket and the log file.
    dir: PathBuf,
    data: PathBuf,
    log: PathBuf,
    bin: PathBuf,
    /// Whether `initdb`/`pg_ctl` must run as the `postgres` user.
    as_postgres: bool,
    running: Mutex<bool>,
    watchdog: Mutex<Option<Child>>,
}

impl TestPostgres {
    /// Initialises and starts a new cluster on a free port. Blocking (about a
    /// second or two); panics with the server's log if it cannot start.
    pub fn start() -> TestPostgres {
        let bin = bin_dir().to_path_buf();
        let as_postgres = util::is_root();
        let root = util::scratch_root(as_postgres);
        let dir = root.join(format!("test-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| {
            panic!(
                "test-support: cannot create PostgreSQL directory {}: {e}",
                dir.display()
            )
        });
        if as_postgres {
            let out = Command::new("chown")
                .arg("-R")
                .arg("postgres:")
                .arg(&dir)
                .output()
                .unwrap_or_else(|e| panic!("test-support: cannot run chown: {e}"));
            if !out.status.success() {
                panic!(
                    "test-support: `chown -R postgres: {}` failed: {}",
                    dir.display(),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        let data = dir.join("data");
        let log = dir.join("postgres.log");

        let mut pg = TestPostgres {
            port: 0,
            dir,
            data,
            log,
            bin,
            as_postgres,
            running: Mutex::new(false),
            watchdog: Mutex::new(None),
        };

        // From here on, `pg`'s Drop cleans up whatever was created, and the
        // watchdog does if this process dies first. Its second pass catches
        // an `initdb` or `pg_ctl start` that was still running at that moment.
        let stop_and_remove = format!(
            "{pg_ctl} stop -m immediate -D {data} >/dev/null 2>&1; rm -rf {dir}",
            pg_ctl = pg.shell_prefix("pg_ctl"),
            data = util::sh_quote_path(&pg.data),
            dir = util::sh_quote_path(&pg.dir),
        );
        let cleanup = format!("{stop_and_remove}; sleep 3; {stop_and_remove}");
        *lock(&pg.watchdog) = util::spawn_watchdog(&cleanup);

        let mut initdb = pg.command("initdb");
        initdb.arg("-D").arg(&pg.data).args([
            "--auth=trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        ]);
        pg.run_checked(initdb, "initdb");

        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            pg.port = util::free_port();
            match pg.pg_ctl_start() {
                Ok(()) => {
                    *lock(&pg.running) = true;
                    return pg;
                }
                Err(msg) => failures.push(msg),
            }
        }
        panic!(
            "test-support: PostgreSQL did not start after {START_ATTEMPTS} attempts:\n{}",
            failures.join("\n----\n")
        );
    }

    /// The TCP port the server listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The connection URL of database `db`:
    /// `postgres://postgres@127.0.0.1:<port>/<db>`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// The cluster's top directory (holds `data/`, the unix socket and
    /// `postgres.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's log so far (for diagnostics).
    pub fn server_log(&self) -> String {
        util::read_for_diagnostics(&self.log)
    }

    /// Creates a new, uniquely named database (`t_<uuid>`) and returns its URL.
    /// Must run inside a tokio runtime; panics if the server cannot be reached.
    pub async fn fresh_database(&self) -> String {
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        let client = self.client("postgres").await;
        client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap_or_else(|e| panic!("test-support: CREATE DATABASE {name} failed: {e}"));
        self.url(&name)
    }

    /// Connects to database `db` as `postgres` (the connection task is spawned
    /// on the current tokio runtime). Panics if the connection fails.
    pub async fn client(&self, db: &str) -> tokio_postgres::Client {
        let url = self.url(db);
        let (client, connection) = tokio_postgres::connect(&url, NoTls)
            .await
            .unwrap_or_else(|e| panic!("test-support: cannot connect to {url}: {e}"));
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }

    /// Whether the server is currently meant to be running (it was started and
    /// not stopped through this handle).
    pub fn is_running(&self) -> bool {
        *lock(&self.running)
    }

    /// Stops the server (`pg_ctl stop -m fast`), keeping its data and port so
    /// that [`TestPostgres::start_again`] can bring it back. Does nothing if it
    /// is already stopped. Blocking.
    pub fn stop(&self) {
        let mut running = lock(&self.running);
        if !*running {
            return;
        }
        let mut cmd = self.command("pg_ctl");
        cmd.args(["stop", "-w", "-t", "60", "-m", "fast", "-D"])
            .arg(&self.data);
        self.run_checked(cmd, "pg_ctl stop");
        *running = false;
    }

    /// Starts a stopped server again on the same port with the same data.
    /// Does nothing if it is running. Blocking; panics if it cannot start.
    pub fn start_again(&self) {
        let mut running = lock(&self.running);
        if *running {
            return;
        }
        self.pg_ctl_start()
            .unwrap_or_else(|msg| panic!("test-support: PostgreSQL did not start again: {msg}"));
        *running = true;
    }

    /// [`TestPostgres::stop`] then [`TestPostgres::start_again`].
    pub fn restart(&self) {
        self.stop();
        self.start_again();
    }

    /// `pg_ctl start` on `self.port`; on failure, the error message holds
    /// pg_ctl's output and the server log.
    fn pg_ctl_start(&self) -> Result<(), String> {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={sock} \
             -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
             -c max_connections=200 -c shared_buffers=32MB",
            port = self.port,
            sock = self.dir.display(),
        );
        let mut cmd = self.command("pg_ctl");
        cmd.args(["start", "-w", "-t", "60", "-D"])
            .arg(&self.data)
            .arg("-o")
            .arg(options)
            .arg("-l")
            .arg(&self.log);
        let out = cmd
            .output()
            .map_err(|e| format!("cannot run pg_ctl: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            // Make sure a half-started server does not linger.
            let mut stop = self.command("pg_ctl");
            stop.args(["stop", "-m", "immediate", "-D"]).arg(&self.data);
            let _ = stop.output();
            Err(format!(
                "pg_ctl start on port {} failed ({}):\n{}\nserver log:\n{}",
                self.port,
                out.status,
                describe_output(&out),
                self.server_log()
            ))
        }
    }

    /// A command running the PostgreSQL program `program`, as `postgres` when
    /// we are root, from the cluster's directory.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        cmd.current_dir(&self.dir);
        cmd
    }

    /// The shell words that run `program` (see [`TestPostgres::command`]).
    fn shell_prefix(&self, program: &str) -> String {
        let path = util::sh_quote_path(&self.bin.join(program));
        if self.as_postgres {
            format!("runuser -u postgres -- {path}")
        } else {
            path
        }
    }

    fn run_checked(&self, mut cmd: Command, what: &str) -> Output {
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("test-support: cannot run {what}: {e}"));
        if !out.status.success() {
            panic!(
                "test-support: {what} failed ({}):\n{}\nserver log:\n{}",
                out.status,
                describe_output(&out),
                self.server_log()
            );
        }
        out
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        util::dismiss_watchdog(lock(&self.watchdog).take());
        if self.data.exists() {
            let mut cmd = self.command("pg_ctl");
            cmd.args(["stop", "-w", "-m", "immediate", "-D"])
                .arg(&self.data);
            let _ = cmd.output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The process-wide shared cluster, started on first use. It is never dropped;
/// a detached watchdog stops it and removes its directory once the test
/// process has exited. Give each test its own database with
/// [`TestPostgres::fresh_database`], and never stop this one (use a dedicated
/// [`TestPostgres`] for outage tests).
pub fn shared_postgres() -> &'static TestPostgres {
    static SHARED: OnceLock<TestPostgres> = OnceLock::new();
    SHARED.get_or_init(TestPostgres::start)
}

/// PostgreSQL's program directory: `pg_config --bindir` when `pg_config` is
/// on `PATH` and that directory has `initdb`, else the highest
/// `/usr/lib/postgresql/<version>/bin`.
fn bin_dir() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if util::find_on_path("pg_config").is_some()
            && let Ok(out) = Command::new("pg_config").arg("--bindir").output()
            && out.status.success()
        {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if util::is_executable(&dir.join("initdb")) && util::is_executable(&dir.join("pg_ctl"))
            {
                return dir;
            }
        }
        let mut versions: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                let version: Vec<u32> = name
                    .split('.')
                    .map(|part| part.parse().ok())
                    .collect::<Option<_>>()?;
                let bin = entry.path().join("bin");
                util::is_executable(&bin.join("initdb")).then_some((version, bin))
            })
            .collect();
        versions.sort();
        match versions.pop() {
            Some((_, bin)) => bin,
            None => panic!(
                "test-support: PostgreSQL server programs not found: no `pg_config` on PATH \
                 pointing at initdb, and no /usr/lib/postgresql/*/bin/initdb \
                 (install the postgresql package)"
            ),
        }
    })
}

fn describe_output(out: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
