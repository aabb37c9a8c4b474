//! Throwaway Redis servers for tests.
//!
//! [`TestRedis::start`] runs `redis-server` as a child process on a free port
//! of 127.0.0.1 (never 6379), without persistence, and waits until it answers
//! `PING`. Use [`shared_redis`] for one server per test process together with
//! [`fresh_prefix`] to isolate tests' keys; use a dedicated [`TestRedis`] when
//! a test stops and restarts the server to simulate an outage.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::util;
use crate::util::lock;

/// How long to wait for a freshly spawned server to answer `PING`.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// How many times [`TestRedis::start`] tries a new port when the server does
/// not come up (another process may grab the free port first).
const START_ATTEMPTS: usize = 3;

/// A throwaway `redis-server` listening on `127.0.0.1:<port()>`, without
/// password or persistence. Dropping it kills the server and removes its
/// directory.
#[derive(Debug)]
pub struct TestRedis {
    port: u16,
    dir: PathBuf,
    log: PathBuf,
    pid_file: PathBuf,
    bin: PathBuf,
    child: Mutex<Option<Child>>,
    watchdog: Mutex<Option<Child>>,
}

impl TestRedis {
    /// Starts a new server on a free port and waits until it answers `PING`.
    /// Blocking; panics with the server's log if it cannot start.
    pub fn start() -> TestRedis {
        let bin = util::find_on_path("redis-server")
            .unwrap_or_else(|| PathBuf::from("/usr/bin/redis-server"));
        if !util::is_executable(&bin) {
            panic!(
                "test-support: redis-server not found on PATH nor at /usr/bin/redis-server \
                 (install the redis-server package)"
            );
        }
        let dir =
            util::scratch_root(false).join(format!("test-redis-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| {
            panic!(
                "test-support: cannot create Redis directory {}: {e}",
                dir.display()
            )
        });
        let redis = TestRedis {
            port: 0,
            log: dir.join("redis.log"),
            pid_file: dir.join("redis.pid"),
            dir,
            bin,
            child: Mutex::new(None),
            watchdog: Mutex::new(None),
        };
        let cleanup = format!(
            "kill -9 $(cat {pid} 2>/dev/null) 2>/dev/null; rm -rf {dir}",
            pid = util::sh_quote_path(&redis.pid_file),
            dir = util::sh_quote_path(&redis.dir),
        );
        *lock(&redis.watchdog) = util::spawn_watchdog(&cleanup);

        let mut redis = redis;
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            redis.port = util::free_port();
            match redis.spawn_server() {
                Ok(child) => {
                    *lock(&redis.child) = Some(child);
                    return redis;
                }
                Err(msg) => failures.push(msg),
            }
        }
        panic!(
            "test-support: redis-server did not start after {START_ATTEMPTS} attempts:\n{}",
            failures.join("\n----\n")
        );
    }

    /// The TCP port the server listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's URL: `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The server's directory (holds its log file).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's log so far (for diagnostics).
    pub fn server_log(&self) -> String {
        util::read_for_diagnostics(&self.log)
    }

    /// Whether the server answers `PING` with `+PONG` right now (raw TCP,
    /// short timeouts).
    pub fn ping(&self) -> bool {
        ping(self.port)
    }

    /// Whether the server process is currently meant to be running (it was
    /// started and not stopped through this handle).
    pub fn is_running(&self) -> bool {
        lock(&self.child).is_some()
    }

    /// Kills the server, keeping its port so that [`TestRedis::start_again`]
    /// can bring it back (empty: there is no persistence). Does nothing if it
    /// is already stopped.
    pub fn stop(&self) {
        let mut child = lock(&self.child);
        if let Some(mut c) = child.take() {
            let _ = c.kill();
            let _ = c.wait();
            let _ = std::fs::remove_file(&self.pid_file);
        }
    }

    /// Starts a stopped server again on the same port and waits until it
    /// answers `PING`. Does nothing if it is running. Panics if it cannot
    /// start.
    pub fn start_again(&self) {
        let mut child = lock(&self.child);
        if child.is_some() {
            return;
        }
        let c = self
            .spawn_server()
            .unwrap_or_else(|msg| panic!("test-support: redis-server did not start again: {msg}"));
        *child = Some(c);
    }

    /// [`TestRedis::stop`] then [`TestRedis::start_again`].
    pub fn restart(&self) {
        self.stop();
        self.start_again();
    }

    /// Spawns `redis-server` on `self.port` and waits until it answers `PING`.
    fn spawn_server(&self) -> Result<Child, String> {
        let mut child = Command::new(&self.bin)
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(&self.log)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot spawn {}: {e}", self.bin.display()))?;
        let _ = std::fs::write(&self.pid_file, child.id().to_string());

        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if ping(self.port) {
                return Ok(child);
            }
            if let Ok(Some(status)) = child.try_wait() {
                let _ = std::fs::remove_file(&self.pid_file);
                return Err(format!(
                    "redis-server on port {} exited ({status}); log:\n{}",
                    self.port,
                    self.server_log()
                ));
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                let _ = std::fs::remove_file(&self.pid_file);
                return Err(format!(
                    "redis-server on port {} did not answer PING within {READY_TIMEOUT:?}; log:\n{}",
                    self.port,
                    self.server_log()
                ));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        util::dismiss_watchdog(lock(&self.watchdog).take());
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The process-wide shared server, started on first use. It is never dropped;
/// a detached watchdog kills it and removes its directory once the test
/// process has exited. Isolate tests with [`fresh_prefix`], and never stop
/// this one (use a dedicated [`TestRedis`] for outage tests).
pub fn shared_redis() -> &'static TestRedis {
    static SHARED: OnceLock<TestRedis> = OnceLock::new();
    SHARED.get_or_init(TestRedis::start)
}

/// A unique key prefix, `t:<uuid>:`, so tests sharing a server do not see
/// each other's keys.
pub fn fresh_prefix() -> String {
    format!("t:{}:", uuid::Uuid::new_v4().simple())
}

/// Sends `PING` to 127.0.0.1:`port` over raw TCP and checks for `+PONG`.
fn ping(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(1000)));
    let _ = stream.set_write_timeout(Some(Duration::from_millis(1000)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    let mut got = 0;
    while got < 7 {
        match stream.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    buf[..got].starts_with(b"+PONG")
}
