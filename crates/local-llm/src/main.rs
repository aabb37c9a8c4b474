//! `local-llm`: serves a small real model over Ollama's API until SIGTERM
//! or SIGINT. Every flag has a `LOCAL_LLM_*` environment fallback; see
//! `--help`. A model file that is missing or corrupt is one error line and
//! exit code 66.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use chatbot_common::config::{LogSettings, ServerSettings};
use chatbot_common::telemetry;
use clap::Parser;
use local_llm::engine::EngineSettings;
use local_llm::{DEFAULT_MODEL_NAME, SERVICE_NAME, Settings, StartError};

/// A small real model served over Ollama's HTTP API.
#[derive(Debug, Parser)]
#[command(name = "local-llm", version, about)]
struct Cli {
    /// Address to listen on.
    #[arg(long, env = "LOCAL_LLM_HOST", default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port to listen on (Ollama's by default); 0 picks a free one (logged).
    #[arg(long, env = "LOCAL_LLM_PORT", default_value_t = 11434)]
    port: u16,
    /// The GGUF model file [default: the cache of scripts/fetch-model.sh].
    #[arg(long, env = "LOCAL_LLM_MODEL")]
    model: Option<PathBuf>,
    /// The sha256 the model file must have; empty: no check. Without it the
    /// default model's file is checked against its known digest.
    #[arg(long, env = "LOCAL_LLM_MODEL_SHA256")]
    model_sha256: Option<String>,
    /// The name the model is served under.
    #[arg(long, env = "LOCAL_LLM_MODEL_NAME", default_value = DEFAULT_MODEL_NAME)]
    model_name: String,
    /// CPU threads generating tokens; 0: all cores but one (at least one).
    #[arg(long, env = "LOCAL_LLM_THREADS", default_value_t = 0)]
    threads: usize,
    /// CPU threads reading a prompt; 0: all cores.
    #[arg(long, env = "LOCAL_LLM_THREADS_BATCH", default_value_t = 0)]
    threads_batch: usize,
    /// Context window in tokens when a request sets no num_ctx.
    #[arg(long, env = "LOCAL_LLM_NUM_CTX", default_value_t = 2048)]
    num_ctx: u32,
    /// Requests that may wait for the model; past it, 503 (server busy).
    #[arg(long, env = "LOCAL_LLM_MAX_QUEUE", default_value_t = 8)]
    max_queue: usize,
    /// HTTP worker threads.
    #[arg(long, env = "LOCAL_LLM_WORKERS", default_value_t = 1)]
    workers: usize,
    /// How long shutdown waits for answers in progress, in seconds.
    #[arg(long, env = "LOCAL_LLM_SHUTDOWN_GRACE_SECS", default_value_t = 5)]
    shutdown_grace_secs: u64,
    /// Log filter (`RUST_LOG` overrides it).
    #[arg(long, env = "LOCAL_LLM_LOG_LEVEL", default_value = "info")]
    log_level: String,
    /// Log format: `json` or `pretty`.
    #[arg(long, env = "LOCAL_LLM_LOG_FORMAT", default_value = "json", value_parser = ["json", "pretty"])]
    log_format: String,
}

impl Cli {
    fn settings(self) -> Settings {
        let model = self.model.unwrap_or_else(local_llm::default_model_path);
        let model_sha256 = Settings::expected_sha256(&model, self.model_sha256);
        Settings {
            model,
            model_sha256,
            model_name: self.model_name,
            engine: EngineSettings {
                threads: if self.threads == 0 {
                    local_llm::default_threads()
                } else {
                    self.threads
                },
                threads_batch: if self.threads_batch == 0 {
                    local_llm::cores()
                } else {
                    self.threads_batch
                },
                num_ctx: self.num_ctx,
                max_queue: self.max_queue,
            },
            listen: ServerSettings {
                host: self.host,
                port: self.port,
                workers: self.workers.max(1),
                shutdown_grace_secs: self.shutdown_grace_secs,
                metrics_port: None,
            },
        }
    }

    fn log(&self) -> LogSettings {
        LogSettings::from_flags(&self.log_level, &self.log_format)
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init_logging(SERVICE_NAME, &cli.log());
    let service = match local_llm::start(cli.settings()) {
        Ok(service) => service,
        Err(error) => {
            tracing::error!(%error, "could not start");
            eprintln!("{SERVICE_NAME}: {error}");
            return ExitCode::from(match error {
                StartError::ModelFile(_) => 66,
                _ => 1,
            });
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
