//! Service binaries run as real processes, for end-to-end tests.
//!
//! [`ServiceProcess::spawn`] finds a binary of this workspace in Cargo's
//! target directory, runs it with extra environment variables, captures its
//! stdout and stderr lines, and waits until it logs (as a JSON line) that it
//! is listening:
//!
//! ```text
//! {"level":"INFO","message":"listening","addr":"127.0.0.1:41234",...}
//! ```
//!
//! `message` and `addr` are also accepted under a `fields` object, as
//! `tracing-subscriber`'s JSON format writes them unless events are
//! flattened. Set `TEST_ECHO_LOGS` to echo every captured line to stderr with
//! a `[name]` prefix.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::util::lock;

/// How long [`ServiceProcess::spawn`] waits for the `listening` log line.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long [`ServiceProcess::terminate`] waits for the process to exit after
/// SIGTERM.
const TERMINATE_TIMEOUT: Duration = Duration::from_secs(10);

/// Asks the kernel for a free TCP port on 127.0.0.1 (bind to port 0, read the
/// port, drop the listener). Another process may take it before it is used,
/// so use it promptly.
pub fn free_port() -> u16 {
    crate::util::free_port()
}

/// A service binary running as a child process, listening on [`addr`].
/// Dropping it kills the process (SIGKILL); use [`terminate`] for a graceful
/// stop.
///
/// [`addr`]: ServiceProcess::addr
/// [`terminate`]: ServiceProcess::terminate
#[derive(Debug)]
pub struct ServiceProcess {
    name: String,
    child: Child,
    addr: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
    exit_status: Option<ExitStatus>,
}

/// The variable naming chat's outbox file.
pub const OUTBOX_VAR: &str = "CHATBOT__CHAT__OUTBOX__PATH";

/// A path for an outbox file no other process uses.
pub fn unique_outbox() -> String {
    std::env::temp_dir()
        .join(format!("chatbot-test-outbox-{}.redb", uuid::Uuid::new_v4()))
        .display()
        .to_string()
}

impl ServiceProcess {
    /// Runs the workspace binary `binary_name` with the inherited environment
    /// plus `envs`, and waits (up to 30 s) until it logs that it is listening.
    ///
    /// The binary is looked up in `$CHATBOT_BIN_DIR` when that variable is
    /// set, else in Cargo's target directory next to the running test (a test
    /// binary lives in `target/<profile>/deps`, the service binaries in
    /// `target/<profile>`). Panics, with the captured output, if the binary is
    /// missing, exits, or does not become ready in time. Blocking.
    pub fn spawn(binary_name: &str, envs: &[(String, String)]) -> ServiceProcess {
        let path = binary_path(binary_name);
        Self::spawn_path(&path, envs)
    }

    /// [`ServiceProcess::spawn`] run on tokio's blocking pool, so that tasks
    /// of the calling runtime (e.g. an [`N8nStandIn`](crate::N8nStandIn) on a
    /// current-thread runtime) keep running while the service starts.
    pub async fn spawn_async(binary_name: &str, envs: &[(String, String)]) -> ServiceProcess {
        let name = binary_name.to_owned();
        let envs = envs.to_vec();
        match tokio::task::spawn_blocking(move || Self::spawn(&name, &envs)).await {
            Ok(process) => process,
            Err(e) => match e.try_into_panic() {
                Ok(payload) => std::panic::resume_unwind(payload),
                Err(e) => panic!("test-support: spawning {binary_name} was cancelled: {e}"),
            },
        }
    }

    /// Like [`ServiceProcess::spawn`], with the executable given by path.
    pub fn spawn_path(path: &Path, envs: &[(String, String)]) -> ServiceProcess {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        // Every chat process gets an outbox file of its own unless the test
        // names one (to restart a chat on the same outbox).
        let outbox = (!envs.iter().any(|(k, _)| k == OUTBOX_VAR)).then(unique_outbox);
        let mut child = Command::new(path)
            .envs(outbox.map(|path| (OUTBOX_VAR.to_owned(), path)))
            .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("test-support: cannot spawn {}: {e}", path.display()));

        let logs = Arc::new(Mutex::new(Vec::new()));
        let echo = std::env::var_os("TEST_ECHO_LOGS").is_some();
        let (ready_tx, ready_rx) = mpsc::channel::<String>();
        if let Some(stdout) = child.stdout.take() {
            spawn_reader(&name, stdout, Arc::clone(&logs), echo, Some(ready_tx));
        }
        if let Some(stderr) = child.stderr.take() {
            spawn_reader(&name, stderr, Arc::clone(&logs), echo, None);
        }

        let mut process = ServiceProcess {
            name,
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            logs,
            exit_status: None,
        };

        let deadline = Instant::now() + READY_TIMEOUT;
        let addr_text = loop {
            match ready_rx.recv_timeout(Duration::from_millis(50)) {
                Ok(addr) => break addr,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // stdout closed without a listening line: the process is
                    // (about to be) gone; fall through to the exit check.
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            if let Ok(Some(status)) = process.child.try_wait() {
                process.exit_status = Some(status);
                // Give the reader threads a moment to collect the last lines.
                std::thread::sleep(Duration::from_millis(200));
                panic!(
                    "test-support: {} exited ({status}) before it was listening; output:\n{}",
                    process.name,
                    process.logs().join("\n")
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "test-support: {} did not log a `listening` line within {READY_TIMEOUT:?}; \
                     output:\n{}",
                    process.name,
                    process.logs().join("\n")
                );
            }
        };
        process.addr = addr_text.parse().unwrap_or_else(|e| {
            panic!(
                "test-support: {} logged listening on {addr_text:?}, not a socket address: {e}",
                process.name
            )
        });
        process
    }

    /// The program's name (the binary's file name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The address from the `listening` log line.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port from the `listening` log line.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port())
    }

    /// `http://127.0.0.1:<port>` of the metrics listener, from its
    /// `metrics listening` log line (logged before `listening`). Panics when
    /// the service serves `/metrics` on its main listener.
    pub fn metrics_url(&self) -> String {
        let addr = self
            .logs()
            .iter()
            .find_map(|line| logged_addr(line, "metrics listening"))
            .unwrap_or_else(|| panic!("test-support: {} has no metrics listener", self.name));
        let port = addr.rsplit(':').next().unwrap_or_default();
        format!("http://127.0.0.1:{port}")
    }

    /// Every stdout and stderr line captured so far, in arrival order.
    pub fn logs(&self) -> Vec<String> {
        lock(&self.logs).clone()
    }

    /// Waits up to `timeout` for a captured line containing `needle` and
    /// returns the first one, or `None` on timeout. Blocking.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = lock(&self.logs).iter().find(|l| l.contains(needle)) {
                return Some(line.clone());
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        if self.exit_status.is_some() {
            return false;
        }
        match self.child.try_wait() {
            Ok(Some(status)) => {
                self.exit_status = Some(status);
                false
            }
            Ok(None) => true,
            Err(_) => false,
        }
    }

    /// Sends SIGTERM (`kill -TERM <pid>`) and waits up to 10 s for the process
    /// to exit; returns its exit status. Panics, with the captured output, if
    /// it does not exit in time (it is then killed). Blocking.
    pub fn terminate(&mut self) -> ExitStatus {
        if let Some(status) = self.exit_status {
            return status;
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + TERMINATE_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exit_status = Some(status);
                // Let the reader threads drain the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let status = self.child.wait().ok();
                self.exit_status = status;
                panic!(
                    "test-support: {} did not exit within {TERMINATE_TIMEOUT:?} of SIGTERM; \
                     output:\n{}",
                    self.name,
                    self.logs().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        if self.exit_status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Where the workspace's binaries are: `$CHATBOT_BIN_DIR`, else the directory
/// above the running test binary's `deps/` directory.
pub fn binary_path(binary_name: &str) -> PathBuf {
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os("CHATBOT_BIN_DIR") {
        candidates.push(PathBuf::from(dir).join(binary_name));
    } else if let Ok(exe) = std::env::current_exe() {
        let exe_dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
        if exe_dir.file_name().is_some_and(|n| n == "deps")
            && let Some(profile_dir) = exe_dir.parent()
        {
            candidates.push(profile_dir.join(binary_name));
        }
        candidates.push(exe_dir.join(binary_name));
    }
    match candidates.iter().find(|p| crate::util::is_executable(p)) {
        Some(p) => p.clone(),
        None => panic!(
            "test-support: binary `{binary_name}` not found (looked at {candidates:?}); \
             build it first (e.g. `cargo build -p <its package>`) or set CHATBOT_BIN_DIR"
        ),
    }
}

/// Reads `stream` line by line on a thread, appending each line to `logs`
/// (and echoing it to stderr when `echo`); when `ready` is given, the first
/// `listening` line's address is sent through it.
fn spawn_reader<R: Read + Send + 'static>(
    name: &str,
    stream: R,
    logs: Arc<Mutex<Vec<String>>>,
    echo: bool,
    ready: Option<mpsc::Sender<String>>,
) {
    let name = name.to_owned();
    let spawned = std::thread::Builder::new()
        .name(format!("log-{name}"))
        .spawn(move || {
            let mut ready = ready;
            let mut reader = BufReader::new(stream);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let line = String::from_utf8_lossy(&buf)
                    .trim_end_matches(['\n', '\r'])
                    .to_owned();
                if echo {
                    eprintln!("[{name}] {line}");
                }
                if let Some(addr) = ready.as_ref().and_then(|_| listening_addr(&line))
                    && let Some(tx) = ready.take()
                {
                    let _ = tx.send(addr);
                }
                lock(&logs).push(line);
            }
        });
    if let Err(e) = spawned {
        panic!("test-support: cannot start a log reader thread: {e}");
    }
}

/// The `addr` of a JSON log line whose `message` is `listening` (at the top
/// level or under `fields`).
fn listening_addr(line: &str) -> Option<String> {
    logged_addr(line, "listening")
}

/// The `addr` of a JSON log line whose `message` is `message`.
fn logged_addr(line: &str, message: &str) -> Option<String> {
    let trimmed = line.trim();
    if !trimmed.starts_with('{') {
        return None;
    }
    let value: serde_json::Value = serde_json::from_str(trimmed).ok()?;
    let field = |key: &str| {
        value
            .get(key)
            .or_else(|| value.get("fields").and_then(|f| f.get(key)))
            .and_then(serde_json::Value::as_str)
    };
    if field("message")? != message {
        return None;
    }
    field("addr").map(str::to_owned)
}

/// A finished command as a test reads it: its exit code (-1 when killed by
/// a signal) and its output as text.
#[derive(Debug)]
pub struct Run {
    /// The exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Standard output as JSON; panics showing both outputs when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", self.stdout, self.stderr))
    }
}

impl From<std::process::Output> for Run {
    fn from(output: std::process::Output) -> Self {
        Self {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::listening_addr;

    #[test]
    fn recognises_listening_lines() {
        assert_eq!(
            listening_addr(r#"{"level":"INFO","message":"listening","addr":"127.0.0.1:4000"}"#)
                .as_deref(),
            Some("127.0.0.1:4000")
        );
        assert_eq!(
            listening_addr(
                r#"{"level":"INFO","fields":{"message":"listening","addr":"127.0.0.1:4001"}}"#
            )
            .as_deref(),
            Some("127.0.0.1:4001")
        );
        assert_eq!(
            listening_addr(r#"{"message":"starting","addr":"127.0.0.1:4000"}"#),
            None
        );
        assert_eq!(listening_addr("listening on 127.0.0.1:4000"), None);
    }
}
