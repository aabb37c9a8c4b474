//! Connections to PostgreSQL (a pool, with its usage metrics) and Redis (one
//! shared multiplexed connection), built one way for every service. The
//! clients are behind the `postgres` and `redis` features, so a service links
//! only the ones it uses.
//!
//! Connections open lazily, and every wait (for a free connection, to
//! connect, to recycle, for an answer) is bounded by the configured timeout,
//! so a dead dependency fails a request quickly instead of hanging it. A
//! connection lives on the runtime that opened it (see
//! [`crate::server::Inflight`]).
//!
//! Why not a Redis pool: deadpool-redis pings every connection it hands out
//! again (`UNWATCH` + `PING`), a second round trip for each command, which
//! cost as much Redis CPU as the commands themselves at 1,000 messages a
//! second; Redis's own `ConnectionManager` pipelines every caller's commands
//! on one connection and reconnects by itself.

#[cfg(any(feature = "postgres", feature = "redis"))]
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::Meter;

#[cfg(feature = "postgres")]
use crate::config::DatabaseSettings;
#[cfg(feature = "redis")]
use crate::config::RedisSettings;

/// A pool could not be built from the settings.
#[derive(Debug, thiserror::Error)]
pub enum PoolSetupError {
    /// `database.url` is not a PostgreSQL URL.
    #[cfg(feature = "postgres")]
    #[error("database.url is not a valid PostgreSQL URL")]
    PostgresUrl(#[source] tokio_postgres::Error),
    /// The PostgreSQL pool could not be built.
    #[cfg(feature = "postgres")]
    #[error("the PostgreSQL pool could not be built")]
    Postgres(#[from] deadpool_postgres::BuildError),
    /// `redis.url` is not a Redis URL.
    #[cfg(feature = "redis")]
    #[error("redis.url is not a valid Redis URL")]
    RedisUrl(#[source] redis::RedisError),
}

/// A PostgreSQL pool.
#[cfg(feature = "postgres")]
pub fn postgres(settings: &DatabaseSettings) -> Result<deadpool_postgres::Pool, PoolSetupError> {
    use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
    let mut config: tokio_postgres::Config = settings
        .url
        .expose()
        .parse()
        .map_err(PoolSetupError::PostgresUrl)?;
    if let Some(password) = &settings.password {
        config.password(password.expose());
    }
    let manager = Manager::from_config(
        config,
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let wait = Duration::from_millis(settings.acquire_timeout_ms);
    Ok(Pool::builder(manager)
        .max_size(settings.pool_size.max(1))
        .wait_timeout(Some(wait))
        .create_timeout(Some(wait))
        .recycle_timeout(Some(wait))
        .runtime(Runtime::Tokio1)
        .build()?)
}

/// One multiplexed Redis connection, shared by every caller and reconnected
/// by itself (redis's `ConnectionManager`), for hot paths that make one small
/// call per request: calls are pipelined on it, and there is no pool
/// checkout, which with deadpool-redis costs a second round trip per call
/// (it pings every connection it hands out again). It connects on first use;
/// every call and every connection attempt is bounded by `redis.timeout_ms`.
#[cfg(feature = "redis")]
pub fn redis_shared(
    settings: &RedisSettings,
) -> Result<redis::aio::ConnectionManager, PoolSetupError> {
    use redis::aio::{ConnectionManager, ConnectionManagerConfig};
    let timeout = Duration::from_millis(settings.timeout_ms);
    let client = redis::Client::open(settings.url.expose()).map_err(PoolSetupError::RedisUrl)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(1)
        .set_max_delay(timeout);
    ConnectionManager::new_lazy_with_config(client, config).map_err(PoolSetupError::RedisUrl)
}

/// A pool's connections at one moment.
#[derive(Debug, Clone, Copy)]
pub struct PoolUsage {
    /// Open connections.
    pub size: usize,
    /// Open and idle.
    pub available: usize,
    /// The most it may open.
    pub max_size: usize,
}

/// Usage of a PostgreSQL pool.
#[cfg(feature = "postgres")]
pub fn postgres_usage(pool: &deadpool_postgres::Pool) -> PoolUsage {
    let s = pool.status();
    PoolUsage {
        size: s.size,
        available: s.available,
        max_size: s.max_size,
    }
}

/// Exports `chatbot_pool_connections{pool, state}` (`state` is `in_use`,
/// `idle` or `max`) for a pool, read at each scrape.
pub fn export_usage<F>(meter: &Meter, pool: &'static str, status: F)
where
    F: Fn() -> PoolUsage + Send + Sync + 'static,
{
    meter
        .u64_observable_gauge("chatbot_pool_connections")
        .with_description("Connections of a pool by state")
        .with_callback(move |gauge| {
            let s = status();
            let in_use = s.size.saturating_sub(s.available);
            for (state, value) in [
                ("in_use", in_use),
                ("idle", s.available),
                ("max", s.max_size),
            ] {
                gauge.observe(
                    u64::try_from(value).unwrap_or(u64::MAX),
                    &[KeyValue::new("pool", pool), KeyValue::new("state", state)],
                );
            }
        })
        .build();
}
