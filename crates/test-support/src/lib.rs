//! Dev-only helpers for the integration tests of the chatbot crates and for the
//! end-to-end test.
//!
//! * [`postgres`]: [`TestPostgres`], a throwaway PostgreSQL cluster on a free
//!   port of 127.0.0.1, and [`shared_postgres`], one cluster per test process.
//! * [`redis`]: [`TestRedis`], a throwaway `redis-server`, [`shared_redis`] and
//!   [`fresh_prefix`] for key isolation.
//! * [`process`]: [`ServiceProcess`], a service binary run as a real process
//!   whose logs are captured, and [`free_port`].
//! * [`app`]: settings for in-process services on port 0, and starting them.
//! * [`external`]: third-party servers (Prometheus, exporters) run for a test.
//! * [`n8n`]: [`N8nStandIn`], an HTTP receiver standing in for n8n's webhook
//!   and health endpoint.
//! * [`s3`]: [`TestS3`], a throwaway S3-compatible server (moto).
//! * [`poll`]: [`poll::until`], waiting for a condition with a deadline
//!   instead of a fixed sleep.
//!
//! Nothing here ever touches the machine's own PostgreSQL (5432) or Redis
//! (6379): every server is started on a port taken from the kernel's free
//! ephemeral ports. Servers that could outlive the test process (the shared
//! ones, or any instance when the test process is killed) are cleaned up by a
//! small detached shell watchdog that waits for the test process to exit.

pub mod app;
pub mod external;
pub mod n8n;
pub mod poll;
pub mod postgres;
pub mod process;
pub mod redis;
pub mod s3;

mod util;

pub use external::venv_tool;
pub use n8n::{N8nStandIn, ReceivedRequest};
pub use postgres::{TestPostgres, shared_postgres};
pub use process::{ServiceProcess, free_port};
pub use redis::{TestRedis, fresh_prefix, shared_redis};
pub use s3::{TestS3, urlencode};
