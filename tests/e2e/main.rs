//! End-to-end tests: the four services and the Ollama simulator run as real
//! processes (the binaries cargo built), configured like an operator would,
//! through `config/default.toml` and `CHATBOT__...` variables, against
//! throwaway PostgreSQL and Redis servers. Build the binaries first:
//! `cargo build --workspace --bins` (the test command does).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bench_smoke;
mod chat_path;
mod compat;
mod compose;
mod deploy_k8s;
mod deploy_systemd;
mod faults;
mod local_model;
mod metrics;
mod monitoring;
mod openapi_fuzz;
mod ops;
mod readme_command;
mod secrets;
mod shutdown;
mod traces;

use std::path::PathBuf;

use test_support::app::send_json;
pub(crate) use test_support::venv_tool;
use test_support::{ServiceProcess, fresh_prefix, shared_postgres, shared_redis};

/// The repository root (where `config/` lives).
pub(crate) fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn env(pairs: &[(&str, String)]) -> Vec<(String, String)> {
    let mut all = vec![
        (
            "CHATBOT_CONFIG_DIR".to_owned(),
            repo_root().join("config").display().to_string(),
        ),
        ("CHATBOT__LOG__LEVEL".to_owned(), "info".to_owned()),
    ];
    all.extend(pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    all
}

/// The LLM a stack talks to.
pub(crate) enum Llm<'a> {
    /// The Ollama simulator, with these `OLLAMA_SIM_*` settings.
    Simulator(&'a [(&'a str, String)]),
    /// local-llm with the real model (fetched by scripts/fetch-model.sh).
    Local,
}

/// The name local-llm serves its model under.
pub(crate) const LOCAL_MODEL: &str = "smollm2:135m";

impl Llm<'_> {
    /// Starts it on a free port.
    async fn spawn(
        &self,
        env: impl Fn(&[(&str, String)]) -> Vec<(String, String)>,
    ) -> ServiceProcess {
        match self {
            Self::Simulator(sim_env) => {
                let mut vars = vec![("OLLAMA_SIM_PORT", "0".to_owned())];
                vars.extend(sim_env.iter().cloned());
                ServiceProcess::spawn_async("ollama-sim", &env(&vars)).await
            }
            Self::Local => {
                let vars = [
                    ("LOCAL_LLM_PORT", "0".to_owned()),
                    ("LOCAL_LLM_MODEL", local_model_file()),
                ];
                ServiceProcess::spawn_async("local-llm", &env(&vars)).await
            }
        }
    }

    /// The model chat asks for.
    fn model(&self) -> Option<&'static str> {
        match self {
            Self::Simulator(_) => None,
            Self::Local => Some(LOCAL_MODEL),
        }
    }
}

/// The model file, as `scripts/fetch-model.sh` prints it (fetched by the
/// test set-up; reused here).
fn local_model_file() -> String {
    let output = std::process::Command::new("bash")
        .arg(repo_root().join("scripts/fetch-model.sh"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_owned()
}

/// The whole stack as processes.
pub(crate) struct Stack {
    /// The LLM: the simulator, or local-llm.
    pub(crate) llm: ServiceProcess,
    pub(crate) session: ServiceProcess,
    pub(crate) chat: ServiceProcess,
    pub(crate) gateway: ServiceProcess,
    pub(crate) aggregator: ServiceProcess,
    pub(crate) db_url: String,
    /// Sends the stack's API key with every request.
    pub(crate) http: reqwest::Client,
    /// The API key the stack's client uses (made with `chatbot-ops keys create`).
    pub(crate) api_key: String,
}

/// Makes an admin API key (it sees `/health` details) with `chatbot-ops
/// keys create`, with a limit no test reaches.
fn create_api_key(db_url: &str) -> String {
    let output = std::process::Command::new(test_support::process::binary_path("chatbot-ops"))
        .args([
            "keys", "create", "--name", "e2e", "--admin", "--rpm", "1000000", "--json",
        ])
        .envs(env(&[("CHATBOT__DATABASE__URL", db_url.to_owned())]))
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let created: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    created["key"].as_str().unwrap().to_owned()
}

/// A client that sends `Authorization: Bearer <api_key>` with every request.
pub(crate) fn authorized_client(api_key: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {api_key}")).unwrap();
    value.set_sensitive(true);
    headers.insert(reqwest::header::AUTHORIZATION, value);
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

impl Stack {
    /// Starts everything in dependency order on the shared Redis; `sim_env`
    /// goes to the simulator.
    pub(crate) async fn start(sim_env: &[(&str, String)]) -> Self {
        Self::start_on(&shared_redis().url(), sim_env).await
    }

    /// As [`Stack::start`], on the Redis at `redis_url` (a test that stops
    /// Redis brings its own).
    pub(crate) async fn start_on(redis_url: &str, sim_env: &[(&str, String)]) -> Self {
        Self::start_configured(redis_url, sim_env, &[]).await
    }

    /// As [`Stack::start_on`], with `service_env` added to every service's
    /// environment (settings under test).
    pub(crate) async fn start_configured(
        redis_url: &str,
        sim_env: &[(&str, String)],
        service_env: &[(&str, String)],
    ) -> Self {
        Self::start_with(redis_url, Llm::Simulator(sim_env), service_env).await
    }

    /// As [`Stack::start_configured`], talking to `llm`.
    pub(crate) async fn start_with(
        redis_url: &str,
        llm: Llm<'_>,
        service_env: &[(&str, String)],
    ) -> Self {
        let mut service_env = service_env.to_vec();
        if let Some(model) = llm.model() {
            service_env.push(("CHATBOT__CHAT__MODEL", model.to_owned()));
        }
        let env = |pairs: &[(&str, String)]| {
            let mut all = pairs.to_vec();
            all.extend(service_env.iter().cloned());
            env(&all)
        };
        let db_url = shared_postgres().fresh_database().await;
        let llm = llm.spawn(env).await;
        let prefix = fresh_prefix();
        let session = ServiceProcess::spawn_async(
            "session",
            &env(&[
                ("CHATBOT__SESSION__SERVER__PORT", "0".into()),
                ("CHATBOT__SESSION__SERVER__METRICS_PORT", "0".into()),
                ("CHATBOT__REDIS__URL", redis_url.to_owned()),
                ("CHATBOT__SESSION__KEY_PREFIX", prefix.clone()),
            ]),
        )
        .await;
        let chat = ServiceProcess::spawn_async(
            "chat",
            &env(&[
                ("CHATBOT__CHAT__SERVER__PORT", "0".into()),
                ("CHATBOT__CHAT__SERVER__METRICS_PORT", "0".into()),
                ("CHATBOT__DATABASE__URL", db_url.clone()),
                ("CHATBOT__REDIS__URL", redis_url.to_owned()),
                ("CHATBOT__SESSION__KEY_PREFIX", prefix.clone()),
                ("CHATBOT__OLLAMA__URL", llm.base_url()),
                ("CHATBOT__CHAT__TIMEOUTS__FIRST_TOKEN_MS", "3000".into()),
            ]),
        )
        .await;
        // chat has applied the migrations: the test's API key, made as an
        // operator makes one, is in place before the gateway loads the keys.
        let api_key = create_api_key(&db_url);
        // The gateway relays the aggregator's verdict and the aggregator
        // polls the gateway: the aggregator's port is chosen first.
        let aggregator_port = test_support::free_port();
        let gateway = ServiceProcess::spawn_async(
            "gateway",
            &env(&[
                ("CHATBOT__GATEWAY__SERVER__PORT", "0".into()),
                ("CHATBOT__GATEWAY__SERVER__METRICS_PORT", "0".into()),
                ("CHATBOT__DATABASE__URL", db_url.clone()),
                ("CHATBOT__REDIS__URL", redis_url.to_owned()),
                ("CHATBOT__SESSION__KEY_PREFIX", prefix.clone()),
                ("CHATBOT__GATEWAY__CHAT_URL", chat.base_url()),
                ("CHATBOT__GATEWAY__SESSION_URL", session.base_url()),
                (
                    "CHATBOT__GATEWAY__AGGREGATOR_URL",
                    format!("http://127.0.0.1:{aggregator_port}"),
                ),
            ]),
        )
        .await;
        let aggregator = ServiceProcess::spawn_async(
            "health-aggregator",
            &env(&[
                (
                    "CHATBOT__AGGREGATOR__SERVER__PORT",
                    aggregator_port.to_string(),
                ),
                ("CHATBOT__AGGREGATOR__SERVER__METRICS_PORT", "0".into()),
                ("CHATBOT__AGGREGATOR__INTERVAL_SECS", "1".into()),
                ("CHATBOT__DATABASE__URL", db_url.clone()),
                ("CHATBOT__REDIS__URL", redis_url.to_owned()),
                ("CHATBOT__OLLAMA__URL", llm.base_url()),
                ("CHATBOT__AGGREGATOR__SERVICES__GATEWAY", gateway.base_url()),
                ("CHATBOT__AGGREGATOR__SERVICES__CHAT", chat.base_url()),
                ("CHATBOT__AGGREGATOR__SERVICES__SESSION", session.base_url()),
                (
                    "CHATBOT__AGGREGATOR__METRICS__GATEWAY",
                    gateway.metrics_url(),
                ),
                ("CHATBOT__AGGREGATOR__METRICS__CHAT", chat.metrics_url()),
                (
                    "CHATBOT__AGGREGATOR__METRICS__SESSION",
                    session.metrics_url(),
                ),
            ]),
        )
        .await;
        Self {
            llm,
            session,
            chat,
            gateway,
            aggregator,
            db_url,
            http: authorized_client(&api_key),
            api_key,
        }
    }

    /// `POST /api/chat` on the gateway.
    pub(crate) async fn chat(
        &self,
        body: serde_json::Value,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        send_json(
            self.http
                .post(format!("{}/api/chat", self.gateway.base_url()))
                .json(&body),
        )
        .await
    }
}
