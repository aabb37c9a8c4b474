//! Small helpers shared by the modules of this crate.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};

/// Asks the kernel for a free TCP port on 127.0.0.1 (bind to port 0, read the
/// port, drop the listener).
pub(crate) fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| {
        panic!("test-support: cannot bind 127.0.0.1:0 to find a free port: {e}")
    });
    let port = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("test-support: cannot read local address of listener: {e}"))
        .port();
    drop(listener);
    port
}

/// Whether this process runs as root (uid 0), read from `/proc/self/status`,
/// falling back to `id -u`.
pub(crate) fn is_root() -> bool {
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        for line in status.lines() {
            if let Some(rest) = line.strip_prefix("Uid:") {
                return rest.split_whitespace().next() == Some("0");
            }
        }
    }
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Quotes `s` for a POSIX shell (single quotes).
pub(crate) fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Quotes a path for a POSIX shell.
pub(crate) fn sh_quote_path(p: &Path) -> String {
    sh_quote(&p.to_string_lossy())
}

/// Finds an executable called `name` on `PATH`.
pub(crate) fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// Whether `p` is a regular file with an execute bit.
pub(crate) fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The directory under which throwaway server directories are created.
///
/// This is [`std::env::temp_dir`], unless `for_other_user` is set (the server
/// will run as another user, e.g. `postgres` when we are root) and some
/// ancestor of it cannot be traversed by other users; then `/tmp`.
pub(crate) fn scratch_root(for_other_user: bool) -> PathBuf {
    let tmp = std::env::temp_dir();
    if !for_other_user {
        return tmp;
    }
    let traversable = tmp.ancestors().all(|dir| {
        std::fs::metadata(dir)
            .map(|m| m.permissions().mode() & 0o001 != 0)
            .unwrap_or(false)
    });
    if traversable {
        tmp
    } else {
        PathBuf::from("/tmp")
    }
}

/// Starts a detached shell watchdog: it waits until this test process has
/// exited, then runs `cleanup` (a shell snippet). It runs in its own process
/// group so a Ctrl-C aimed at the test run does not kill it before it could
/// clean up, and with all standard streams on `/dev/null` so it never holds a
/// pipe of whoever runs the tests open.
pub(crate) fn spawn_watchdog(cleanup: &str) -> Option<Child> {
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {cleanup}",
        pid = std::process::id()
    );
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .current_dir("/")
        .process_group(0)
        .spawn()
        .ok()
}

/// Kills and reaps a watchdog started by [`spawn_watchdog`] (used when the
/// server it guards is cleaned up normally).
pub(crate) fn dismiss_watchdog(watchdog: Option<Child>) {
    if let Some(mut child) = watchdog {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Reads a file for a diagnostic message, tolerating its absence.
pub(crate) fn read_for_diagnostics(p: &Path) -> String {
    match std::fs::read(p) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            // Keep messages readable: the tail is what matters.
            let max = 8 * 1024;
            if text.len() > max {
                let mut start = text.len() - max;
                while !text.is_char_boundary(start) {
                    start += 1;
                }
                format!("...{}", &text[start..])
            } else {
                text.into_owned()
            }
        }
        Err(e) => format!("<cannot read {}: {e}>", p.display()),
    }
}

/// Locks a mutex, ignoring poisoning (a panicking test must not break the
/// shared servers for the other tests).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_single_quotes() {
        assert_eq!(sh_quote("a'b"), r"'a'\''b'");
        assert_eq!(sh_quote("/tmp/x y"), "'/tmp/x y'");
    }

    #[test]
    fn free_port_is_not_a_system_port() {
        let p = free_port();
        assert_ne!(p, 0);
        assert_ne!(p, 5432);
        assert_ne!(p, 6379);
    }
}
