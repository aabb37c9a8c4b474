//! Spreading requests over the replicas behind one host name.
//!
//! A keep-alive pool keeps reusing the connection it opened first, so a
//! service scaled to several replicas behind one name (Compose's
//! `--scale chat=2`, a headless Kubernetes Service) would get all of a
//! caller's traffic on one replica. [`Replicas`] resolves the name in the
//! background every [`RESOLVE_EVERY`] and hands out the addresses in turn,
//! one request at a time; the HTTP client then keeps a pool per address.
//!
//! Names that resolve to a single address, or to loopback addresses
//! (`localhost` gives `::1` and `127.0.0.1`, and a service usually listens on
//! only one of them), and IP literals are used as they are.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

/// How often the addresses behind a name are looked up again: a replica that
/// went away stops getting requests within this time.
pub const RESOLVE_EVERY: Duration = Duration::from_secs(5);

/// The replicas behind `scheme://host:port`, refreshed in the background.
#[derive(Debug)]
pub struct Replicas {
    scheme: String,
    addrs: RwLock<Arc<[SocketAddr]>>,
    next: AtomicUsize,
}

impl Replicas {
    /// Starts following the addresses of `base`'s host, or returns `None`
    /// when there is nothing to spread: an IP literal, a URL without a host,
    /// or no Tokio runtime to look names up on.
    pub fn follow(base: &str) -> Option<Arc<Self>> {
        let url = reqwest::Url::parse(base).ok()?;
        let host = url.domain()?;
        let port = url.port_or_known_default()?;
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let replicas = Arc::new(Self {
            scheme: url.scheme().to_owned(),
            addrs: RwLock::new(Arc::from(Vec::new())),
            next: AtomicUsize::new(0),
        });
        runtime.spawn(refresh(Arc::downgrade(&replicas), format!("{host}:{port}")));
        Some(replicas)
    }

    /// The base URL of the next replica (`http://10.0.0.5:3002`), or `None`
    /// while the name has not resolved to several non-loopback addresses.
    pub fn next_base(&self) -> Option<String> {
        let addrs = self.addrs.read().ok()?.clone();
        if addrs.is_empty() {
            return None;
        }
        let addr = addrs[self.next.fetch_add(1, Ordering::Relaxed) % addrs.len()];
        Some(format!("{}://{addr}", self.scheme))
    }

    fn set(&self, addrs: Vec<SocketAddr>) {
        if let Ok(mut current) = self.addrs.write() {
            *current = Arc::from(addrs);
        }
    }
}

/// Looks `host_port` up now and every [`RESOLVE_EVERY`] until the
/// [`Replicas`] are dropped. A failed lookup keeps the last addresses.
async fn refresh(replicas: Weak<Replicas>, host_port: String) {
    loop {
        let found = tokio::net::lookup_host(host_port.as_str()).await;
        let Some(replicas) = replicas.upgrade() else {
            return;
        };
        match found {
            Ok(addrs) => replicas.set(spreadable(addrs.collect())),
            Err(error) => {
                tracing::debug!(host = %host_port, %error, "lookup failed; keeping the last addresses");
            }
        }
        drop(replicas);
        tokio::time::sleep(RESOLVE_EVERY).await;
    }
}

/// The addresses worth spreading over: several, none of them loopback.
fn spreadable(mut addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
    addrs.sort();
    addrs.dedup();
    if addrs.len() < 2 || addrs.iter().any(|a| a.ip().is_loopback()) {
        return Vec::new();
    }
    addrs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn only_several_non_loopback_addresses_are_spread() {
        assert!(spreadable(vec![addr("10.0.0.5:3002")]).is_empty());
        assert!(spreadable(vec![addr("127.0.0.1:3002"), addr("[::1]:3002")]).is_empty());
        let two = spreadable(vec![
            addr("10.0.0.6:3002"),
            addr("10.0.0.5:3002"),
            addr("10.0.0.6:3002"),
        ]);
        assert_eq!(two, vec![addr("10.0.0.5:3002"), addr("10.0.0.6:3002")]);
    }

    #[test]
    fn replicas_are_taken_in_turn() {
        let replicas = Replicas {
            scheme: "http".to_owned(),
            addrs: RwLock::new(Arc::from(Vec::new())),
            next: AtomicUsize::new(0),
        };
        assert_eq!(replicas.next_base(), None, "nothing resolved yet");
        replicas.set(spreadable(vec![
            addr("10.0.0.5:3002"),
            addr("10.0.0.6:3002"),
        ]));
        let bases: Vec<_> = (0..4).filter_map(|_| replicas.next_base()).collect();
        assert_eq!(
            bases,
            [
                "http://10.0.0.5:3002",
                "http://10.0.0.6:3002",
                "http://10.0.0.5:3002",
                "http://10.0.0.6:3002"
            ]
        );
    }

    #[tokio::test]
    async fn ip_literals_and_localhost_are_used_as_they_are() {
        assert!(Replicas::follow("http://127.0.0.1:3002").is_none());
        assert!(Replicas::follow("http://[::1]:3002").is_none());
        let localhost =
            Replicas::follow("http://localhost:3002").unwrap_or_else(|| panic!("a name"));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(localhost.next_base(), None, "loopback is not spread");
    }
}
