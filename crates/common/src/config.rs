//! Typed settings of the whole stack.
//!
//! One file describes every service, so one configuration can be shared by all
//! four processes. Layers, later ones winning:
//!
//! 1. `config/default.toml` (the directory is `CHATBOT_CONFIG_DIR`, default
//!    `config`), over the same file as it was compiled in ([`DEFAULTS`]: the
//!    one place defaults are written; no `Default` impl repeats them);
//! 2. the environment file `config/<CHATBOT_ENV>.toml` when `CHATBOT_ENV` is set,
//!    or the file named by `CHATBOT_CONFIG_FILE`;
//! 3. variables `CHATBOT__SECTION__KEY`, for example `CHATBOT__DATABASE__URL`;
//! 4. variables `CHATBOT__SECTION__KEY_FILE` naming a file that holds the
//!    value (`CHATBOT__DATABASE__URL_FILE=/run/secrets/database-url`), so
//!    secrets come from Docker or Kubernetes secrets and systemd credentials
//!    rather than the environment. A trailing newline is dropped; a missing
//!    or unreadable file stops start-up naming the variable.
//!
//! Unknown keys are rejected, so a typo fails start-up with the key named.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::Deserialize;

/// The shipped `config/default.toml`, compiled in: the one place every
/// default is written. It is the first layer of every load, so a deployed
/// `default.toml` that lacks a key (an older copy) still gets its default.
pub const DEFAULTS: &str = include_str!("../../../config/default.toml");

/// Every setting of the stack; each service reads the sections it needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Logging.
    pub log: LogSettings,
    /// Distributed tracing.
    pub tracing: TracingSettings,
    /// The public gateway.
    pub gateway: GatewaySettings,
    /// The chat service.
    pub chat: ChatSettings,
    /// Sessions: the layout in Redis (chat and session) and the session
    /// service's listener.
    pub session: SessionSettings,
    /// The health aggregator.
    pub aggregator: AggregatorSettings,
    /// PostgreSQL, used by chat.
    pub database: DatabaseSettings,
    /// Redis, used by chat and session.
    pub redis: RedisSettings,
    /// The Ollama API, used by chat.
    pub ollama: OllamaSettings,
    /// The optional n8n webhook for urgent messages.
    pub n8n: N8nSettings,
    /// The operations tool, `chatbot-ops`.
    pub ops: OpsSettings,
    /// API keys on the gateway's public API.
    pub auth: AuthSettings,
    /// Default per-key limits.
    pub limits: LimitSettings,
    /// Calls between the services.
    pub internal: InternalSettings,
}

/// A failure to load the configuration; its message is one line naming the
/// key (or file) and the problem.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `CHATBOT_CONFIG_FILE` or `CHATBOT_ENV` names a file that is not there.
    #[error("invalid configuration: environment file {} does not exist", .0.display())]
    MissingEnvFile(PathBuf),
    /// A `CHATBOT__…_FILE` variable names a file that cannot be read.
    #[error("invalid configuration: {variable}: cannot read {path}: {source}")]
    UnreadableFile {
        /// The variable.
        variable: String,
        /// The file it names.
        path: String,
        /// Why it cannot be read.
        source: std::io::Error,
    },
    /// A value has the wrong type or cannot be parsed (figment's report,
    /// on one line).
    #[error("invalid configuration: {0}")]
    Malformed(String),
    /// A value is out of its range.
    #[error("invalid configuration: {key}: {why}")]
    OutOfRange {
        /// The key, `chat.max_message_chars`.
        key: &'static str,
        /// What it must be.
        why: &'static str,
    },
}

impl Default for Settings {
    /// The settings of [`DEFAULTS`] alone.
    fn default() -> Self {
        // The compiled-in file is checked by a unit test
        // (`the_compiled_in_defaults_load`), so this cannot fail at run time.
        #[allow(clippy::expect_used)]
        Figment::from(Toml::string(DEFAULTS))
            .extract()
            .expect("config/default.toml is valid")
    }
}

impl Settings {
    /// Loads the layered configuration from the process environment.
    pub fn load() -> Result<Self, ConfigError> {
        let dir = std::env::var_os("CHATBOT_CONFIG_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("config"));
        let env_file = match std::env::var_os("CHATBOT_CONFIG_FILE") {
            Some(file) => Some(PathBuf::from(file)),
            None => std::env::var("CHATBOT_ENV")
                .ok()
                .filter(|e| !e.is_empty())
                .map(|e| dir.join(format!("{e}.toml"))),
        };
        Self::from_figment(Self::figment(&dir, env_file.as_deref())?)
    }

    /// The layered sources, without extracting them.
    pub fn figment(dir: &Path, env_file: Option<&Path>) -> Result<Figment, ConfigError> {
        let mut figment = Figment::new()
            .merge(Toml::string(DEFAULTS))
            .merge(Toml::file(dir.join("default.toml")));
        if let Some(file) = env_file {
            if !file.exists() {
                return Err(ConfigError::MissingEnvFile(file.to_path_buf()));
            }
            figment = figment.merge(Toml::file(file));
        }
        let env = Env::prefixed(ENV_PREFIX)
            .split("__")
            .filter(|key| !key.as_str().to_ascii_lowercase().ends_with(FILE_SUFFIX));
        from_files(figment.merge(env), std::env::vars())
    }

    /// Extracts and validates settings from a figment.
    pub fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let settings: Settings = figment
            .extract()
            .map_err(|e| ConfigError::Malformed(one_line(&e)))?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let fail = |key, why| Err(ConfigError::OutOfRange { key, why });
        if self.chat.max_message_chars == 0 {
            return fail("chat.max_message_chars", "must be at least 1");
        }
        if self.session.max_turns == 0 {
            return fail("session.max_turns", "must be at least 1");
        }
        if self.session.idle_timeout_secs == 0 {
            return fail("session.idle_timeout_secs", "must be at least 1");
        }
        if self.gateway.max_body_bytes < 64 {
            return fail("gateway.max_body_bytes", "must be at least 64");
        }
        if self.n8n.enabled && self.n8n.webhook_url.expose().is_empty() {
            return fail("n8n.webhook_url", "is required when n8n.enabled = true");
        }
        if !(0.0..=1.0).contains(&self.tracing.sample_ratio) {
            return fail("tracing.sample_ratio", "must be between 0.0 and 1.0");
        }
        if self.log.max_files == 0 || self.log.max_file_bytes < 1024 {
            return fail(
                "log.max_files / log.max_file_bytes",
                "must be at least 1 file of 1024 bytes",
            );
        }
        if self
            .database
            .password
            .as_ref()
            .is_some_and(|p| p.expose().is_empty())
        {
            return fail("database.password", "must not be empty when set");
        }
        if self.chat.max_inflight == 0 {
            return fail("chat.max_inflight", "must be at least 1");
        }
        if self.chat.model.is_empty() {
            return fail("chat.model", "must not be empty");
        }
        if self
            .internal
            .token
            .as_ref()
            .is_some_and(|t| t.expose().len() < 16)
        {
            return fail("internal.token", "must be at least 16 characters when set");
        }
        Ok(())
    }
}

/// Prefix of the environment variables that set keys.
const ENV_PREFIX: &str = "CHATBOT__";

/// Suffix (after lowercasing) of a variable whose value is a file to read.
const FILE_SUFFIX: &str = "_file";

/// Merges the values of the `CHATBOT__…_FILE` variables among `vars`.
fn from_files(
    mut figment: Figment,
    vars: impl Iterator<Item = (String, String)>,
) -> Result<Figment, ConfigError> {
    for (name, path) in vars {
        let Some(key) = name
            .strip_prefix(ENV_PREFIX)
            .map(str::to_ascii_lowercase)
            .and_then(|key| key.strip_suffix(FILE_SUFFIX).map(|k| k.replace("__", ".")))
        else {
            continue;
        };
        let value =
            std::fs::read_to_string(&path).map_err(|source| ConfigError::UnreadableFile {
                variable: name.clone(),
                path: path.clone(),
                source,
            })?;
        let value = value.trim_end_matches(['\r', '\n']);
        figment = figment.merge(Serialized::default(
            &key,
            value
                .parse::<figment::value::Value>()
                .unwrap_or_else(|never| match never {}),
        ));
    }
    Ok(figment)
}

fn one_line(error: &figment::Error) -> String {
    error
        .clone()
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let source = e
                .metadata
                .as_ref()
                .map(|m| format!(" (from {})", m.name))
                .unwrap_or_default();
            if key.is_empty() {
                format!("{}{source}", e.kind)
            } else {
                format!("{key}: {}{source}", e.kind)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A string that never prints: connection URLs with passwords, webhook tokens.
#[derive(Clone, Deserialize, Default, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret value, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Logging settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// A `tracing` filter: a level, or per-target levels such as
    /// `info,chat=debug,tokio_postgres=warn`. `RUST_LOG` overrides it.
    pub level: String,
    /// `json` (default: Elastic Common Schema lines) or `pretty` for people
    /// reading a terminal.
    pub format: LogFormat,
    /// When set, logs also go to `<dir>/<service>.log` (everything) and
    /// `<dir>/<service>.error.log` (errors only), rotated by size.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// A log file is rotated when it would grow past this many bytes.
    pub max_file_bytes: u64,
    /// Rotated files kept per log (`x.log.1` .. `x.log.N`).
    pub max_files: usize,
    /// Log message texts (user messages, replies). Off: only their lengths.
    pub include_message_text: bool,
}

impl LogSettings {
    /// The defaults with a `level` and a `format` given as flags (`json`,
    /// or `pretty`): what the stand-alone binaries (the Ollama simulator,
    /// local-llm) take.
    pub fn from_flags(level: &str, format: &str) -> Self {
        Self {
            level: level.to_owned(),
            format: if format == "pretty" {
                LogFormat::Pretty
            } else {
                LogFormat::Json
            },
            ..Settings::default().log
        }
    }
}

/// Distributed tracing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracingSettings {
    /// OTLP/HTTP endpoint spans are exported to, such as
    /// `http://127.0.0.1:4318/v1/traces`; none exports nothing (trace ids
    /// are still propagated, logged and returned to clients).
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// Fraction of new traces recorded (0.0 to 1.0); an incoming sampled
    /// `traceparent` is always followed.
    pub sample_ratio: f64,
}

/// Log line format.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object a line.
    Json,
    /// Human-readable text.
    Pretty,
}

/// Settings every service shares: where it listens and how it stops.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Address to bind.
    pub host: IpAddr,
    /// Port; 0 picks a free one (tests), and the real one is logged.
    pub port: u16,
    /// Worker threads; 0 means one a CPU core.
    pub workers: usize,
    /// How long shutdown waits for in-flight requests, in seconds.
    pub shutdown_grace_secs: u64,
    /// Serve `/metrics` on this port of the same host, apart from the API
    /// (0 picks a free one); absent, `/metrics` is on the main listener.
    #[serde(default)]
    pub metrics_port: Option<u16>,
}

impl ServerSettings {
    /// Whether the listener is reachable from other hosts.
    pub fn beyond_loopback(&self) -> bool {
        !self.host.is_loopback()
    }

    /// Listening on `127.0.0.1:port` with default workers and grace.
    pub const fn on(port: u16) -> Self {
        Self {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port,
            workers: 0,
            shutdown_grace_secs: 30,
            metrics_port: None,
        }
    }

    /// The socket address to bind.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }

    /// The metrics listener's address, when it has its own.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_port
            .map(|port| SocketAddr::new(self.host, port))
    }
}

/// The public gateway.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySettings {
    /// Listener.
    pub server: ServerSettings,
    /// Base URL of the chat service.
    pub chat_url: String,
    /// Base URL of the session service.
    pub session_url: String,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Timeout of a non-streamed call to chat or session, in seconds. Streams
    /// are bounded by chat's own LLM timeouts instead.
    pub upstream_timeout_secs: u64,
    /// Base URL of the health aggregator, whose verdict `GET /health` serves.
    pub aggregator_url: String,
    /// Per-component details in the gateway's `/health`, for admin API keys
    /// (or everyone when keys are off); off, nobody sees them there.
    pub health_details: bool,
    /// How long the gateway keeps the aggregator's verdict before asking
    /// again, in milliseconds; 0 asks on every `/health`.
    pub health_cache_ms: u64,
    /// Cross-origin requests from browsers to the public API.
    pub cors: CorsSettings,
}

/// Which web pages (origins) may call the public API from a browser.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsSettings {
    /// Origins such as `https://app.example.com`, or `*` for any; empty:
    /// no cross-origin access (no CORS headers are sent).
    pub allowed_origins: Vec<String>,
    /// Methods a page may use.
    pub allowed_methods: Vec<String>,
    /// Request headers a page may send.
    pub allowed_headers: Vec<String>,
    /// How long a browser may cache a preflight answer, in seconds.
    pub max_age_secs: usize,
}

/// The chat service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatSettings {
    /// Listener.
    pub server: ServerSettings,
    /// The Ollama model to chat with.
    pub model: String,
    /// System prompt sent first in every conversation.
    pub system_prompt: String,
    /// Longest accepted message, in Unicode characters.
    pub max_message_chars: usize,
    /// How many earlier turns are sent to the model as context.
    pub history_turns: usize,
    /// LLM call timeouts.
    pub timeouts: LlmTimeouts,
    /// Keyword rules for type and urgency.
    pub classification: ClassificationSettings,
    /// Exchanges in progress at once in this process; past it, new ones are
    /// refused at once with 503 `overloaded` and `Retry-After`.
    pub max_inflight: usize,
    /// Where exchanges wait that the database could not take yet.
    pub outbox: OutboxSettings,
}

/// The durable outbox of exchanges not yet in PostgreSQL (`chat/src/outbox.rs`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxSettings {
    /// Its file (created with its directory); one per chat process, on a
    /// disk that survives a restart of the process.
    pub path: PathBuf,
    /// Bytes of rows it may hold; when full, new exchanges are refused with
    /// 503 `storage_unavailable` until the database takes the backlog.
    pub max_bytes: u64,
}

/// Timeouts of one LLM call, in milliseconds.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmTimeouts {
    /// Establishing the TCP connection.
    pub connect_ms: u64,
    /// From sending the request to the first token.
    pub first_token_ms: u64,
    /// The whole call.
    pub total_ms: u64,
}

impl LlmTimeouts {
    /// Connect timeout.
    pub fn connect(&self) -> Duration {
        Duration::from_millis(self.connect_ms)
    }
    /// Time-to-first-token timeout.
    pub fn first_token(&self) -> Duration {
        Duration::from_millis(self.first_token_ms)
    }
    /// Whole-call timeout.
    pub fn total(&self) -> Duration {
        Duration::from_millis(self.total_ms)
    }
}

/// Keyword rules. A message's type is the first rule with a keyword in it, or
/// `other`; urgency is `HIGH` if any high keyword occurs, else `LOW` if any low
/// keyword occurs, else `NORMAL`. Matching ignores case and whole-word
/// boundaries are not required for multi-word keywords.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassificationSettings {
    /// Rules in priority order.
    pub types: Vec<TypeRule>,
    /// Keywords that make a message `HIGH` urgency.
    pub high_urgency: Vec<String>,
    /// Keywords that make a message `LOW` urgency.
    pub low_urgency: Vec<String>,
}

/// One type rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TypeRule {
    /// The type: one of question, complaint, request, greeting, feedback.
    #[serde(rename = "type")]
    pub kind: String,
    /// Keywords (case-insensitive).
    pub keywords: Vec<String>,
}

/// The session service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSettings {
    /// Listener.
    pub server: ServerSettings,
    /// A session not touched for this long expires, in seconds.
    pub idle_timeout_secs: u64,
    /// Most turns kept per session; older ones are dropped.
    pub max_turns: usize,
    /// Prefix of every Redis key, so several deployments can share a server.
    pub key_prefix: String,
}

/// API keys on the gateway's public API (the `access` crate).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// Require `Authorization: Bearer <key>` on the public API. Off is for
    /// closed networks only, and logged at start-up as a warning.
    pub enabled: bool,
    /// How often the gateway reloads the keys, in seconds: a key made or
    /// revoked takes effect within this period.
    pub refresh_secs: u64,
}

/// Calls between the services (see `crate::server::ServiceBuilder::internal`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InternalSettings {
    /// The shared secret the gateway (and `chatbot-ops`) send to chat,
    /// session and the aggregator, which require it whenever it is set and
    /// refuse to start without it when they listen beyond loopback. Set it
    /// from a file: `CHATBOT__INTERNAL__TOKEN_FILE`.
    pub token: Option<Secret>,
}

/// Per-key limits, for keys that do not set their own.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    /// Requests a minute (GCRA: this many at once, then evenly spread).
    pub requests_per_minute: u32,
    /// Streamed answers open at the same time.
    pub concurrent_streams: u32,
}

/// The health aggregator.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregatorSettings {
    /// Listener.
    pub server: ServerSettings,
    /// Seconds between two rounds of checks.
    pub interval_secs: u64,
    /// Per-check timeout, in seconds.
    pub timeout_secs: u64,
    /// Services whose `/readyz` is polled: name to base URL.
    pub services: std::collections::BTreeMap<String, String>,
    /// Services whose `/metrics` `/metrics/all` merges: name to the base URL
    /// of their metrics listener (`server.metrics_port`).
    pub metrics: std::collections::BTreeMap<String, String>,
    /// A result older than this many intervals counts as failed (`stale`).
    pub stale_after_intervals: u32,
    /// Filesystems whose free space is checked.
    pub disk_paths: Vec<PathBuf>,
    /// Free-space percentage under which `disk` warns.
    pub disk_warn_free_percent: f64,
    /// Free-space percentage under which `disk` fails.
    pub disk_fail_free_percent: f64,
    /// Available-memory percentage under which `memory` warns.
    pub memory_warn_available_percent: f64,
    /// Available-memory percentage under which `memory` fails.
    pub memory_fail_available_percent: f64,
}

/// PostgreSQL.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// Connection URL, `postgres://user:password@host:port/db`.
    pub url: Secret,
    /// The password, when it is kept apart from the URL (usually set with
    /// `CHATBOT__DATABASE__PASSWORD_FILE`); it replaces the URL's password.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Most pooled connections per process.
    pub pool_size: usize,
    /// Waiting for a pooled connection, in milliseconds.
    pub acquire_timeout_ms: u64,
    /// Apply pending migrations at start-up.
    pub migrate_on_start: bool,
}

/// Redis.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// Connection URL, `redis://host:port/db`. Each process keeps one
    /// multiplexed connection (see `crate::pools::redis_shared`).
    pub url: Secret,
    /// Timeout of one Redis round trip, in milliseconds.
    pub timeout_ms: u64,
}

/// The Ollama API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OllamaSettings {
    /// Base URL, `http://127.0.0.1:11434` for a local Ollama.
    pub url: String,
    /// Several Ollama servers (replaces `url` when not empty): chat spreads
    /// the calls over them (see `chat/src/backends.rs`).
    #[serde(default)]
    pub urls: Vec<String>,
}

impl OllamaSettings {
    /// The backends: `urls`, or `url` alone.
    pub fn backends(&self) -> Vec<&str> {
        if self.urls.is_empty() {
            vec![self.url.as_str()]
        } else {
            self.urls.iter().map(String::as_str).collect()
        }
    }
}

/// The optional n8n webhook.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct N8nSettings {
    /// Post `HIGH` urgency messages to the webhook.
    pub enabled: bool,
    /// The webhook URL (may carry a token, so it never prints).
    pub webhook_url: Secret,
    /// Timeout of one webhook call, in milliseconds.
    pub timeout_ms: u64,
    /// n8n's health endpoint (such as `http://127.0.0.1:5678/healthz`),
    /// checked by the aggregator as an optional component when set.
    pub health_url: String,
}

/// The operations tool `chatbot-ops`: where it looks, what it keeps, and
/// the thresholds of its checks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpsSettings {
    /// Base URL whose `/health` verdict is read (the aggregator's, or the
    /// gateway's).
    pub health_url: String,
    /// Prometheus, for the error ratio and latency checks; empty: skipped.
    pub prometheus_url: String,
    /// Highest acceptable error ratio (0.001 = 0.1 %).
    pub max_error_ratio: f64,
    /// Highest acceptable p95 response time, in seconds.
    pub max_p95_seconds: f64,
    /// A newest good backup older than this many hours is a problem.
    pub max_backup_age_hours: u64,
    /// Backups.
    pub backup: BackupSettings,
}

/// Where backups go and how long they are kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupSettings {
    /// Local directory of the backups, one folder each.
    pub dir: PathBuf,
    /// The configuration directory archived with every backup.
    pub config_dir: PathBuf,
    /// Database dumps are kept this many days.
    pub dump_retention_days: u64,
    /// Log and configuration archives are kept this many days.
    pub archive_retention_days: u64,
    /// S3-compatible object storage; no bucket: local only.
    pub s3: S3Settings,
}

/// S3-compatible object storage for backups. Credentials come from
/// `access_key_id` / `secret_access_key` (set them with `…_FILE`
/// variables) or the standard `AWS_*` environment variables.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Settings {
    /// The bucket; empty: backups stay local.
    pub bucket: String,
    /// Key prefix of every object, e.g. `chatbot/`.
    pub prefix: String,
    /// Endpoint of an S3-compatible server; empty: AWS.
    pub endpoint: String,
    /// Region.
    pub region: String,
    /// Access key id.
    #[serde(default)]
    pub access_key_id: Option<Secret>,
    /// Secret access key.
    #[serde(default)]
    pub secret_access_key: Option<Secret>,
}

#[cfg(test)]
mod tests {
    use super::*;

    // figment's Jail fixes the closure's error type.
    #[allow(clippy::result_large_err)]
    fn load_with(toml: &str, env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let mut result = None;
        figment::Jail::expect_with(|jail| {
            jail.create_file("default.toml", toml)?;
            for (k, v) in env {
                jail.set_env(k, v);
            }
            result = Some(Settings::from_figment(Settings::figment(
                jail.directory(),
                None,
            )?));
            Ok(())
        });
        result.unwrap_or_else(|| Err(ConfigError::Malformed("jail did not run".into())))
    }

    impl From<ConfigError> for figment::Error {
        fn from(e: ConfigError) -> Self {
            figment::Error::from(e.to_string())
        }
    }

    #[test]
    fn environment_variables_override_the_file() {
        let s = load_with(
            "[chat]\nmodel = \"from-file\"\n",
            &[
                ("CHATBOT__CHAT__MODEL", "from-env"),
                ("CHATBOT__GATEWAY__SERVER__PORT", "0"),
            ],
        );
        let s = s.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.chat.model, "from-env");
        assert_eq!(s.gateway.server.port, 0);
        assert_eq!(s.session.idle_timeout_secs, 1800, "defaults fill the rest");
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        let err = load_with("[chat]\nmodle = \"x\"\n", &[]).err();
        let msg = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("modle"), "{msg}");
    }

    #[test]
    fn invalid_values_name_the_key() {
        let err = load_with("[session]\nmax_turns = 0\n", &[]).err();
        let msg = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("session.max_turns"), "{msg}");
    }

    #[test]
    fn the_compiled_in_defaults_load() {
        let figment = Figment::from(Toml::string(DEFAULTS));
        let s = Settings::from_figment(figment).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            [
                s.gateway.server.port,
                s.chat.server.port,
                s.session.server.port,
                s.aggregator.server.port
            ],
            [3001, 3002, 3003, 3004]
        );
        assert_eq!(s.gateway.server.shutdown_grace_secs, 30);
        assert_eq!(s.chat.classification.types.len(), 5);
        assert_eq!(s.log.dir, None);
        assert_eq!(Settings::default().chat.model, s.chat.model);
    }

    #[test]
    fn a_partial_default_file_keeps_the_other_defaults() {
        let s = load_with("[chat]\nmodel = \"other\"\n", &[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.chat.model, "other");
        assert_eq!(s.chat.max_message_chars, 4000, "from the compiled-in file");
        assert_eq!(s.session.server.port, 3003);
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn file_variables_set_keys_from_files() {
        let mut result = None;
        figment::Jail::expect_with(|jail| {
            jail.create_file("default.toml", "")?;
            jail.create_file("db-url", "postgres://u:s3cret@db/x\n")?;
            jail.create_file("port", "4000")?;
            let dir = jail.directory().to_owned();
            jail.set_env("CHATBOT__DATABASE__URL_FILE", dir.join("db-url").display());
            jail.set_env(
                "CHATBOT__GATEWAY__SERVER__PORT_FILE",
                dir.join("port").display(),
            );
            result = Some(Settings::from_figment(Settings::figment(&dir, None)?));
            Ok(())
        });
        let s = result
            .and_then(Result::ok)
            .unwrap_or_else(|| panic!("did not load"));
        assert_eq!(s.database.url.expose(), "postgres://u:s3cret@db/x");
        assert_eq!(s.gateway.server.port, 4000);
    }

    #[test]
    fn a_missing_file_names_the_variable() {
        let missing = from_files(
            Figment::new(),
            [(
                "CHATBOT__REDIS__URL_FILE".to_owned(),
                "/nonexistent/redis-url".to_owned(),
            )]
            .into_iter(),
        );
        let msg = missing.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            msg.contains("CHATBOT__REDIS__URL_FILE: cannot read /nonexistent/redis-url"),
            "{msg}"
        );
    }

    #[test]
    fn an_empty_database_password_is_refused() {
        let err = load_with("[database]\npassword = \"\"\n", &[]).err();
        let msg = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("database.password"), "{msg}");
    }

    #[test]
    fn secrets_never_print() {
        let mut s = Settings::default();
        s.database.password = Some("the-db-password".into());
        s.internal.token = Some("the-internal-token".into());
        let printed = format!("{s:?}");
        for secret in ["chatbot:chatbot@", "the-db-password", "the-internal-token"] {
            assert!(!printed.contains(secret), "{secret} in {printed}");
        }
    }

    #[test]
    fn a_short_internal_token_is_refused() {
        let err = load_with("[internal]\ntoken = \"short\"\n", &[]).err();
        let msg = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("internal.token"), "{msg}");
    }
}
