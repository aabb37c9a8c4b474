//! Shared plumbing used by every chatbot service.
//!
//! A service crate holds only what is particular to it; everything else lives
//! here, written once:
//!
//! - [`api`]: wire types shared by the services and validation of client input;
//! - [`config`]: the typed settings of the whole stack, layered from
//!   `config/default.toml`, an environment file and `CHATBOT__...` variables;
//! - [`telemetry`]: logs and traces set up in one call, the OpenTelemetry
//!   meter with its Prometheus exporter, and the HTTP request metrics
//!   middleware;
//! - [`logging`]: Elastic Common Schema log lines and size-rotated log files;
//! - [`trace_context`]: W3C `traceparent` in and out, the request span;
//! - [`error`]: the one mapping from errors to JSON responses with stable codes;
//! - [`body`]: reading a JSON request body with a size limit and clear errors;
//! - [`server`]: binding, the `/livez`, `/readyz`, `/metrics` and
//!   `/openapi.json` routes, and graceful shutdown on SIGTERM/SIGINT;
//! - [`probe`]: looking at a dependency (PostgreSQL, Redis, an HTTP
//!   endpoint), one abstraction for `/readyz` and the health aggregator;
//! - [`health`]: `/readyz`, which runs a service's probes;
//! - [`pools`]: the PostgreSQL pool and its usage metrics, the shared Redis
//!   connection;
//! - [`system`]: free disk space and available memory of the host, and the
//!   thresholds they are graded against;
//! - [`upstream`]: pooled keep-alive HTTP clients toward other services;
//! - [`replicas`]: spreading an upstream's requests over the replicas behind
//!   its host name;
//! - [`verdict`]: the health verdict the aggregator builds, the gateway
//!   relays and `chatbot-ops` reads.
//!
//! Start reading at [`server::ServiceBuilder`], which every `main` uses.

pub mod api;
pub mod body;
pub mod config;
pub mod error;
pub mod health;
pub mod internal;
pub mod logging;
pub mod openapi;
pub mod pools;
pub mod probe;
pub mod replicas;
pub mod server;
pub mod system;
pub mod telemetry;
pub mod trace_context;
pub mod upstream;
pub mod verdict;

pub use error::{ApiError, ErrorCode};
