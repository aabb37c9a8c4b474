//! `docker-compose.yml` brought up for real: the shipped file with the
//! simulator variant and the test's local images (`deploy/compose/test.yml`;
//! no image registry is reachable here), chat scaled to two replicas, the
//! `monitoring` profile but Grafana. Chats through the published gateway
//! port, the stored rows, `/health`, every Prometheus target, requests
//! spread over both chat replicas, Redis and PostgreSQL outages, a `down`
//! and `up` that keeps the data, then `down -v`.
//!
//! Needs the Docker engine and the local base images that
//! `scripts/setup.sh --test` starts and builds
//! (`deploy/compose/local/build.sh`); the chatbot image is built here from
//! the debug binaries cargo built (`--target prebuilt`).

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use test_support::app::send_json;
use test_support::free_port;

use crate::{repo_root, venv_tool};

/// The services the test starts: everything but Grafana, which cannot be
/// installed here (its dashboards are checked against Prometheus instead).
const SERVICES: &[&str] = &[
    "postgres",
    "redis",
    "ollama",
    "ollama-pull",
    "migrate",
    "chat",
    "session",
    "health-aggregator",
    "gateway",
    "prometheus",
    "alertmanager",
    "postgres-exporter",
    "redis-exporter",
    "node-exporter",
];

const CHATBOT_IMAGE: &str = "chatbot-local/chatbot:test";

/// One compose project of the test's own, taken down with its volumes on drop.
struct Compose {
    project: String,
    env: Vec<(&'static str, String)>,
    gateway: String,
    prometheus: String,
    http: reqwest::Client,
    /// The API key made in the running stack ([`Compose::authorize`]).
    key: std::sync::OnceLock<String>,
    _secrets: tempfile::TempDir,
}

impl Compose {
    fn new() -> Self {
        build_chatbot_image();
        let secrets = tempfile::tempdir().unwrap();
        let made = Command::new("bash")
            .arg(repo_root().join("deploy/compose/secrets.sh"))
            .env("CHATBOT_SECRETS_DIR", secrets.path())
            .output()
            .unwrap();
        assert!(made.status.success(), "secrets.sh: {made:?}");
        let (gateway_port, prometheus_port) = (free_port(), free_port());
        let env = vec![
            ("CHATBOT_IMAGE", CHATBOT_IMAGE.to_owned()),
            ("CHATBOT_SECRETS_DIR", secrets.path().display().to_string()),
            ("CHATBOT_GATEWAY_PORT", gateway_port.to_string()),
            ("PROMETHEUS_PORT", prometheus_port.to_string()),
            ("ALERTMANAGER_PORT", free_port().to_string()),
        ];
        Self {
            project: format!("chatbot-e2e-{}", std::process::id()),
            env,
            gateway: format!("http://127.0.0.1:{gateway_port}"),
            prometheus: format!("http://127.0.0.1:{prometheus_port}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            key: std::sync::OnceLock::new(),
            _secrets: secrets,
        }
    }

    /// Makes an API key with the image's chatbot-ops, as the deployment
    /// guide says, and waits until the gateway has loaded it.
    async fn authorize(&self) {
        let created = self.run(&[
            "exec",
            "-T",
            "health-aggregator",
            "chatbot-ops",
            "keys",
            "create",
            "--name",
            "compose",
            "--admin",
            "--json",
        ]);
        let created: Value = serde_json::from_str(&created).unwrap();
        let key = created["key"].as_str().unwrap().to_owned();
        test_support::poll::until(
            "the gateway to load the key",
            Duration::from_secs(15),
            || {
                let probe = self
                    .api(
                        reqwest::Method::GET,
                        &format!("/api/sessions/{}", uuid::Uuid::nil()),
                    )
                    .bearer_auth(&key);
                async move {
                    (probe.send().await.ok()?.status() != StatusCode::UNAUTHORIZED).then_some(())
                }
            },
        )
        .await;
        self.key.set(key).unwrap();
    }

    /// A request to the gateway's public API, with the key once there is one.
    fn api(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.gateway));
        match self.key.get() {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    /// Runs `docker compose` on the project with `args`.
    fn try_run(&self, args: &[&str]) -> Output {
        Command::new(venv_tool("docker-compose"))
            .current_dir(repo_root())
            .args(["-p", &self.project])
            .args(["-f", "docker-compose.yml"])
            .args(["-f", "deploy/compose/simulator.yml"])
            .args(["-f", "deploy/compose/test.yml"])
            .args(["--profile", "monitoring"])
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .unwrap_or_else(|e| panic!("cannot run docker compose (scripts/setup.sh --test): {e}"))
    }

    /// As [`Compose::try_run`], panicking with compose's output on failure.
    fn run(&self, args: &[&str]) -> String {
        let output = self.try_run(args);
        assert!(
            output.status.success(),
            "docker compose {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn up(&self) {
        let mut args = vec!["up", "-d", "--wait", "--scale", "chat=2"];
        args.extend(SERVICES);
        self.run(&args);
    }

    async fn chat(&self, body: Value) -> (StatusCode, Value) {
        send_json(self.api(reqwest::Method::POST, "/api/chat").json(&body)).await
    }

    /// The verdict's status and the components that do not pass.
    async fn health(&self) -> (String, Vec<String>) {
        // The admin key sees the details (made in `authorize`).
        let (_, verdict) = send_json(self.api(reqwest::Method::GET, "/health")).await;
        let failing = verdict["checks"]
            .as_object()
            .map(|checks| {
                checks
                    .iter()
                    .filter(|(_, v)| v[0]["status"] != "pass")
                    .map(|(k, _)| k.split(':').next().unwrap_or(k).to_owned())
                    .collect()
            })
            .unwrap_or_default();
        (verdict["status"].as_str().unwrap_or("").to_owned(), failing)
    }

    /// Waits up to `secs` for `/health` to say `status` while naming
    /// `component` among the failing ones (when given), returning the
    /// failing components it then names. Each component is polled on its
    /// own schedule, so a dependent service may be named a moment before
    /// the dependency itself.
    async fn health_becomes(
        &self,
        status: &str,
        component: Option<&str>,
        secs: u64,
    ) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let (now, failing) = self.health().await;
            let named = component.is_none_or(|c| failing.iter().any(|f| f == c));
            if now == status && named {
                return failing;
            }
            assert!(
                Instant::now() < deadline,
                "/health stayed {now} (failing: {failing:?}), expected {status} naming {component:?}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Stops `service`: a chat from `user` is still answered and the verdict
    /// turns ERROR naming `component`; starts it again: the verdict is OK,
    /// with nothing else restarted.
    async fn outage(&self, service: &str, component: &str, user: &str) {
        let others = |mut started: Vec<String>| {
            started.retain(|line| !line.contains(&format!("-{service}-")));
            started
        };
        let before = others(self.started_at());
        self.run(&["stop", service]);
        let (status, reply) = self
            .chat(json!({"user_id": user, "message": format!("{service} is down")}))
            .await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        self.health_becomes("ERROR", Some(component), 30).await;
        self.run(&["start", service]);
        self.health_becomes("OK", None, 60).await;
        assert_eq!(others(self.started_at()), before, "nothing else restarted");
    }

    /// `<container> <start time>` for every running container of the project.
    fn started_at(&self) -> Vec<String> {
        let ids = self.run(&["ps", "-q"]);
        let inspect = Command::new("docker")
            .args(["inspect", "--format", "{{.Name}} {{.State.StartedAt}}"])
            .args(ids.split_whitespace())
            .output()
            .unwrap();
        let mut lines: Vec<String> = String::from_utf8_lossy(&inspect.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        lines.sort();
        lines
    }

    /// One SQL query through psql in the postgres container.
    fn sql(&self, query: &str) -> String {
        self.run(&[
            "exec", "-T", "postgres", "psql", "-U", "chatbot", "-d", "chatbot", "-At", "-c", query,
        ])
        .trim()
        .to_owned()
    }

    /// How many exchanges each chat replica has logged.
    fn exchanges_per_chat_replica(&self) -> Vec<usize> {
        self.run(&["ps", "-q", "chat"])
            .lines()
            .map(|id| {
                let logs = Command::new("docker").args(["logs", id]).output().unwrap();
                String::from_utf8_lossy(&logs.stdout)
                    .matches("\"message processed\"")
                    .count()
            })
            .collect()
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        let _ = self.try_run(&["down", "-v", "--remove-orphans", "--timeout", "10"]);
    }
}

/// Builds the chatbot image from the debug binaries, on the local base.
fn build_chatbot_image() {
    let output = Command::new("docker")
        .current_dir(repo_root())
        .env("DOCKER_BUILDKIT", "0")
        .args([
            "build",
            "-q",
            "-f",
            "deploy/docker/Dockerfile",
            "--target",
            "prebuilt",
        ])
        .args(["--build-arg", "RUNTIME_IMAGE=chatbot-test/debian:bookworm"])
        .args([
            "--build-arg",
            "BIN_DIR=target/debug",
            "-t",
            CHATBOT_IMAGE,
            ".",
        ])
        .output()
        .unwrap_or_else(|e| panic!("cannot run docker (scripts/setup.sh --test): {e}"));
    assert!(
        output.status.success(),
        "docker build failed (are the local base images there? bash deploy/compose/local/build.sh): {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

async fn prometheus_targets(compose: &Compose) -> Vec<(String, String)> {
    let (_, body) = send_json(
        compose
            .http
            .get(format!("{}/api/v1/targets", compose.prometheus)),
    )
    .await;
    body["data"]["activeTargets"]
        .as_array()
        .map(|targets| {
            targets
                .iter()
                .map(|t| {
                    let name = t["labels"]["service"]
                        .as_str()
                        .or(t["labels"]["job"].as_str())
                        .unwrap_or("?");
                    (
                        name.to_owned(),
                        t["health"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compose_stack_serves_survives_outages_and_keeps_its_data() {
    let compose = Compose::new();
    compose.up();
    compose.authorize().await;

    // Two chats through the published port; the second carries the first.
    let (status, first) = compose
        .chat(json!({"user_id": "compose-user", "message": "Hello from compose"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let session = first["session_id"].as_str().unwrap().to_owned();
    let (status, second) = compose
        .chat(json!({"user_id": "compose-user", "message": "And again", "session_id": session}))
        .await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert!(
        second["reply"]
            .as_str()
            .unwrap()
            .contains("(first: \"Hello from compose\")"),
        "the second reply has the first message as context: {second}"
    );
    let stored = format!("SELECT count(*) FROM messages WHERE session_id = '{session}'");
    assert_eq!(compose.sql(&stored), "2");

    assert_eq!(
        compose.health_becomes("OK", None, 60).await,
        Vec::<String>::new()
    );

    // Every target Prometheus knows of is up, both chat replicas included.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let targets = prometheus_targets(&compose).await;
        let chats = targets.iter().filter(|(name, _)| name == "chat").count();
        let down: Vec<_> = targets.iter().filter(|(_, h)| h != "up").collect();
        if targets.len() >= 10 && chats == 2 && down.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus targets not all up: {targets:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // The gateway spreads requests over both chat replicas.
    let before = compose.exchanges_per_chat_replica();
    for i in 0..10 {
        let (status, _) = compose
            .chat(json!({"user_id": "spread", "message": format!("message {i}")}))
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let after = compose.exchanges_per_chat_replica();
    let served: Vec<usize> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    assert_eq!(served.iter().sum::<usize>(), 10, "{served:?}");
    assert!(
        served.iter().all(|&n| n >= 3),
        "both replicas serve: {served:?}"
    );

    // chatbot-ops in the image, as the runbooks run it: the verdict, the
    // daily report, and a restore drill (the image's pg_dump against the
    // compose PostgreSQL) with every table identical.
    let ops = |args: &[&str]| {
        let mut all = vec!["exec", "-T", "health-aggregator", "chatbot-ops"];
        all.extend_from_slice(args);
        compose.try_run(&all)
    };
    let health = ops(&["health"]);
    assert_eq!(health.status.code(), Some(0), "{health:?}");
    let report = ops(&["report", "daily", "--format", "csv"]);
    assert!(
        report.status.success()
            && String::from_utf8_lossy(&report.stdout).starts_with("date,total_messages"),
        "{report:?}"
    );
    let drill = ops(&["drill"]);
    let said = String::from_utf8_lossy(&drill.stdout).into_owned();
    assert_eq!(drill.status.code(), Some(0), "{drill:?}");
    assert!(
        said.lines()
            .any(|l| l.starts_with("messages") && l.contains("identical")),
        "{said}"
    );

    // Redis down: chats are still answered, the verdict names redis.
    compose.outage("redis", "redis", "compose-user").await;
    // PostgreSQL down: still answered, and the row is written once it is back.
    compose.outage("postgres", "database", "pg-outage").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while compose.sql("SELECT count(*) FROM messages WHERE user_id = 'pg-outage'") != "1" {
        assert!(
            Instant::now() < deadline,
            "the exchange answered during the outage was never stored"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // down, then up: the rows and the session are still there.
    let total = compose.sql("SELECT count(*) FROM messages");
    compose.run(&["down", "--timeout", "30"]);
    compose.up();
    assert_eq!(compose.sql("SELECT count(*) FROM messages"), total);
    let (status, kept) =
        send_json(compose.api(reqwest::Method::GET, &format!("/api/sessions/{session}"))).await;
    assert_eq!(status, StatusCode::OK, "the session survived: {kept}");

    compose.run(&["down", "-v", "--timeout", "30"]);
    let volumes = Command::new("docker")
        .args(["volume", "ls", "-q", "--filter"])
        .arg(format!(
            "label=com.docker.compose.project={}",
            compose.project
        ))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&volumes.stdout).trim(),
        "",
        "down -v removes the volumes"
    );
}

/// The shipped compose files are valid: the compose specification's JSON
/// schema and `docker compose config` for the file and its variants.
#[test]
fn the_compose_files_are_valid() {
    let root = repo_root();
    let schema = Command::new(venv_tool("check-jsonschema"))
        .current_dir(&root)
        .args(["--builtin-schema", "vendor.compose-spec"])
        .args([
            "docker-compose.yml",
            "deploy/compose/simulator.yml",
            "deploy/compose/test.yml",
        ])
        .output()
        .unwrap_or_else(|e| panic!("check-jsonschema (scripts/setup.sh --test): {e}"));
    assert!(schema.status.success(), "{schema:?}");
    let secrets = tempfile::tempdir().unwrap();
    for files in [
        &["docker-compose.yml"][..],
        &["docker-compose.yml", "deploy/compose/simulator.yml"],
        &[
            "docker-compose.yml",
            "deploy/compose/simulator.yml",
            "deploy/compose/test.yml",
        ],
    ] {
        let mut command = Command::new(venv_tool("docker-compose"));
        command
            .current_dir(&root)
            .env("CHATBOT_SECRETS_DIR", secrets.path());
        for file in files {
            command.args(["-f", file]);
        }
        let config = command
            .args(["--profile", "monitoring", "config", "-q"])
            .output()
            .unwrap();
        assert!(config.status.success(), "{files:?}: {config:?}");
    }
}

/// Both Dockerfiles pass hadolint.
#[test]
fn the_dockerfiles_are_hadolint_clean() {
    let root = repo_root();
    for file in [
        "deploy/docker/Dockerfile",
        "deploy/compose/local/Dockerfile",
    ] {
        let lint = Command::new(venv_tool("hadolint"))
            .current_dir(&root)
            .arg(file)
            .output()
            .unwrap_or_else(|e| panic!("hadolint (scripts/setup.sh --test): {e}"));
        assert!(
            lint.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&lint.stdout)
        );
    }
}
