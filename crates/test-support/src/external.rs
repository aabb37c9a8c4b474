//! Third-party servers run for a test (Prometheus, Alertmanager, exporters):
//! started as child processes and waited for over HTTP, killed on drop; and
//! [`venv_tool`], the Python tools of the test set-up.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running third-party server.
pub struct External {
    name: String,
    child: Child,
    port: u16,
}

impl External {
    /// Starts `program` with `args` and `envs`, listening on `port`, and waits
    /// up to 30 s until `GET http://127.0.0.1:{port}{ready_path}` answers 2xx.
    /// Panics, naming the program, when it does not.
    pub fn spawn(
        program: &str,
        args: &[String],
        envs: &[(&str, String)],
        port: u16,
        ready_path: &str,
    ) -> External {
        let child = Command::new(program)
            .args(args)
            .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program} (run scripts/setup.sh): {e}"));
        let mut server = External {
            name: program.to_owned(),
            child,
            port,
        };
        server.wait_ready(ready_path);
        server
    }

    fn wait_ready(&mut self, path: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited with {status} before it was ready", self.name);
            }
            if http_ok(self.port, path) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "{} was not ready on port {} within 30 s",
            self.name, self.port
        );
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for External {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal blocking `GET` (no HTTP client needed in a sync context).
fn http_ok(port: u16, path: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0_u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && head[9] == b'2'
}

/// A tool of the test venv (`CHATBOT_TEST_VENV`, default `.venv` at the
/// repository root) made by `scripts/setup.sh --test`; panics saying so
/// when it is missing.
pub fn venv_tool(name: &str) -> PathBuf {
    let path = std::env::var_os("CHATBOT_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv"))
        .join("bin")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: run the test set-up (scripts/setup.sh --test) first",
        path.display()
    );
    path
}
