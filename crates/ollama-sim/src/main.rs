//! `ollama-sim`: runs the Ollama simulator until SIGTERM or SIGINT.
//!
//! Every flag has an `OLLAMA_SIM_*` environment fallback; see `--help`.

use std::net::IpAddr;
use std::process::ExitCode;

use chatbot_common::config::{LogSettings, ServerSettings};
use chatbot_common::telemetry;
use clap::Parser;
use ollama_sim::{DEFAULT_PORT, SERVICE_NAME, SimConfig, config::DEFAULT_REPLY_TOKENS};

/// A deterministic stand-in for the Ollama HTTP API.
#[derive(Debug, Parser)]
#[command(name = "ollama-sim", version, about)]
struct Cli {
    /// Address to listen on.
    #[arg(long, env = "OLLAMA_SIM_HOST", default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port to listen on; 0 picks a free one (the real one is logged).
    #[arg(long, env = "OLLAMA_SIM_PORT", default_value_t = DEFAULT_PORT)]
    port: u16,
    /// Served models, comma-separated.
    #[arg(
        long,
        env = "OLLAMA_SIM_MODELS",
        value_delimiter = ',',
        default_value = "llama3.2:1b,qwen2.5:0.5b"
    )]
    models: Vec<String>,
    /// Delay before the first token, in milliseconds.
    #[arg(long, env = "OLLAMA_SIM_FIRST_TOKEN_MS", default_value_t = 0)]
    first_token_ms: u64,
    /// Tokens per second after the first; 0 = as fast as possible.
    #[arg(long, env = "OLLAMA_SIM_TOKENS_PER_SEC", default_value_t = 0.0)]
    tokens_per_sec: f64,
    /// Minimum reply length in tokens (padded with filler words).
    #[arg(long, env = "OLLAMA_SIM_REPLY_TOKENS", default_value_t = DEFAULT_REPLY_TOKENS)]
    reply_tokens: usize,
    /// Fraction (0.0-1.0) of generation requests failed with a 500.
    #[arg(long, env = "OLLAMA_SIM_ERROR_RATE", default_value_t = 0.0)]
    error_rate: f64,
    /// End every stream with an error line after this many tokens.
    #[arg(long, env = "OLLAMA_SIM_MID_STREAM_ERROR_AFTER")]
    mid_stream_error_after: Option<usize>,
    /// Accept generation requests and never answer them.
    #[arg(long, env = "OLLAMA_SIM_HANG")]
    hang: bool,
    /// Extra delay before the first token of every request, in milliseconds.
    #[arg(long, env = "OLLAMA_SIM_SLOW_START_MS", default_value_t = 0)]
    slow_start_ms: u64,
    /// HTTP worker threads; 0 = one per CPU core.
    #[arg(long, env = "OLLAMA_SIM_WORKERS", default_value_t = 0)]
    workers: usize,
    /// How long shutdown waits for in-flight requests, in seconds.
    #[arg(long, env = "OLLAMA_SIM_SHUTDOWN_GRACE_SECS", default_value_t = 5)]
    shutdown_grace_secs: u64,
    /// Log filter (`RUST_LOG` overrides it).
    #[arg(long, env = "OLLAMA_SIM_LOG_LEVEL", default_value = "info")]
    log_level: String,
    /// Log format: `json` or `pretty`.
    #[arg(long, env = "OLLAMA_SIM_LOG_FORMAT", default_value = "json", value_parser = ["json", "pretty"])]
    log_format: String,
}

impl Cli {
    fn sim_config(&self) -> SimConfig {
        SimConfig {
            models: self
                .models
                .iter()
                .map(|m| m.trim().to_owned())
                .filter(|m| !m.is_empty())
                .collect(),
            first_token_ms: self.first_token_ms,
            tokens_per_sec: self.tokens_per_sec,
            reply_tokens: self.reply_tokens,
            error_rate: self.error_rate,
            mid_stream_error_after: self.mid_stream_error_after,
            hang: self.hang,
            slow_start_ms: self.slow_start_ms,
        }
    }

    fn listen(&self) -> ServerSettings {
        ServerSettings {
            host: self.host,
            port: self.port,
            workers: self.workers,
            shutdown_grace_secs: self.shutdown_grace_secs,
            // A stand-in: its metrics stay on its one listener.
            metrics_port: None,
        }
    }

    fn log(&self) -> LogSettings {
        LogSettings::from_flags(&self.log_level, &self.log_format)
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = cli.sim_config();
    if let Err(error) = config.validate() {
        eprintln!("{SERVICE_NAME}: invalid settings: {error}");
        return ExitCode::from(64);
    }
    telemetry::init_logging(SERVICE_NAME, &cli.log());
    telemetry::init_metrics(SERVICE_NAME);
    tracing::info!(config = ?config, "starting the Ollama simulator");
    let service = match ollama_sim::build(config, &cli.listen()) {
        Ok(service) => service,
        Err(error) => {
            tracing::error!(%error, "could not start");
            return ExitCode::FAILURE;
        }
    };
    match service.run_until_stopped().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "server failed");
            ExitCode::FAILURE
        }
    }
}
