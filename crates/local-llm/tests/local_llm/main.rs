//! local-llm as a user meets it: the binary, the real model file (fetched by
//! `scripts/fetch-model.sh`, which the test set-up runs), the official
//! `ollama` Python client, and plain HTTP for what a client would notice:
//! same seed same text, `num_predict` and `stop` honoured, a prompt longer
//! than the context answered, a full queue answered as Ollama does, a
//! hung-up client's slot freed, a bad model file refused in one line.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use test_support::ServiceProcess;
use test_support::process::binary_path;

const MODEL: &str = "smollm2:135m";

/// The model file: `LOCAL_LLM_MODEL`, or where the fetch script puts it.
fn model_path() -> PathBuf {
    let path = std::env::var_os("LOCAL_LLM_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(local_llm::default_model_path);
    assert!(
        path.exists(),
        "{} is missing: run `bash scripts/fetch-model.sh` (scripts/setup.sh --test does)",
        path.display()
    );
    path
}

/// A local-llm on a free port with one thread (tests run side by side on
/// few cores) and `extra` settings.
fn spawn(extra: &[(&str, &str)]) -> ServiceProcess {
    let mut env = vec![
        ("LOCAL_LLM_PORT".to_owned(), "0".to_owned()),
        (
            "LOCAL_LLM_MODEL".to_owned(),
            model_path().display().to_string(),
        ),
        ("LOCAL_LLM_THREADS".to_owned(), "1".to_owned()),
        ("LOCAL_LLM_THREADS_BATCH".to_owned(), "1".to_owned()),
    ];
    env.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    ServiceProcess::spawn("local-llm", &env)
}

async fn post(llm: &ServiceProcess, path: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", llm.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn generate(llm: &ServiceProcess, prompt: &str, options: Value) -> Value {
    let (status, body) = post(
        llm,
        "/api/generate",
        json!({"model": MODEL, "prompt": prompt, "stream": false, "options": options}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

#[test]
fn the_official_ollama_client_lists_shows_chats_and_generates() {
    let llm = spawn(&[]);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/local_llm/ollama_client.py");
    let output = Command::new(test_support::venv_tool("python"))
        .arg(script)
        .env("OLLAMA_HOST", llm.base_url())
        .env("MODEL", MODEL)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the client failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(seen["list"], json!([MODEL]));
    assert_eq!(seen["ps"], json!([MODEL]));
    assert_eq!(seen["show"]["family"], "llama");
    assert!(
        seen["show"]["template"]
            .as_str()
            .unwrap()
            .contains("<|im_start|>"),
        "the GGUF's own chat template: {}",
        seen["show"]
    );

    let chat = &seen["chat"];
    assert_eq!(chat["role"], "assistant");
    assert!(
        chat["content"].as_str().unwrap().contains("Paris"),
        "a real answer: {chat}"
    );
    assert_eq!(chat["done_reason"], "stop");
    assert!(chat["prompt_eval_count"].as_u64().unwrap() > 5, "{chat}");
    assert!(chat["eval_count"].as_u64().unwrap() > 2, "{chat}");
    assert!(chat["eval_duration"].as_u64().unwrap() > 0, "{chat}");
    assert!(
        chat["total_duration"].as_u64() > chat["eval_duration"].as_u64(),
        "{chat}"
    );
    // Greedy: the streamed answer is the same text, in several pieces.
    let streamed = &seen["chat_stream"];
    assert_eq!(streamed["content"], chat["content"], "{streamed}");
    assert!(streamed["pieces"].as_u64().unwrap() > 3, "{streamed}");
    assert_eq!(streamed["done"], true);
    assert_eq!(streamed["eval_count"], chat["eval_count"]);

    let generated = &seen["generate"];
    assert!(
        generated["response"].as_str().unwrap().contains('4'),
        "{generated}"
    );
    assert!(generated["context"].as_u64().unwrap() > 5, "{generated}");
    assert_eq!(seen["generate_stream"]["response"], generated["response"]);
    assert_eq!(seen["missing_model"]["status"], 404);
    assert_eq!(
        seen["missing_model"]["error"],
        "model 'no-such-model' not found"
    );
}

#[tokio::test]
async fn the_same_seed_gives_the_same_text_and_limits_are_honoured() {
    let llm = spawn(&[]);
    let prompt = "Write a short poem about the sea.";
    let sampled = json!({"temperature": 0.9, "seed": 1234, "num_predict": 40});
    let first = generate(&llm, prompt, sampled.clone()).await;
    let second = generate(&llm, prompt, sampled).await;
    assert!(!first["response"].as_str().unwrap().is_empty());
    assert_eq!(
        first["response"], second["response"],
        "same seed, same text"
    );

    // num_predict: that many tokens, and the answer says it was cut.
    let cut = generate(&llm, prompt, json!({"temperature": 0, "num_predict": 5})).await;
    assert_eq!(cut["eval_count"], 5, "{cut}");
    assert_eq!(cut["done_reason"], "length");

    // stop: the greedy answer ends just before a word it contained.
    let full = generate(&llm, prompt, json!({"temperature": 0, "num_predict": 40})).await;
    let text = full["response"].as_str().unwrap();
    let words: Vec<&str> = text.split_whitespace().collect();
    assert!(words.len() > 6, "{text}");
    let stop = words[5];
    let before = &text[..text.find(stop).unwrap()];
    let stopped = generate(
        &llm,
        prompt,
        json!({"temperature": 0, "num_predict": 40, "stop": [stop]}),
    )
    .await;
    assert_eq!(stopped["response"], before, "stopped at {stop:?}");
    assert_eq!(stopped["done_reason"], "stop");
}

#[tokio::test]
async fn a_prompt_longer_than_the_context_is_answered() {
    let llm = spawn(&[]);
    let filler = "The weather report says it will be sunny. ".repeat(400);
    let (status, body) = post(
        &llm,
        "/api/chat",
        json!({
            "model": MODEL,
            "stream": false,
            "options": {"num_ctx": 256, "num_predict": 16, "temperature": 0},
            "messages": [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": filler},
                {"role": "assistant", "content": "Noted."},
                {"role": "user", "content": format!("{filler} What is the capital of France?")},
            ],
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["done"], true);
    let read = body["prompt_eval_count"].as_u64().unwrap();
    assert!(
        read > 100 && read <= 256,
        "the prompt was cut to the context: {read}"
    );
    assert!(
        !body["message"]["content"].as_str().unwrap().is_empty(),
        "{body}"
    );
}

#[tokio::test]
async fn a_full_queue_is_refused_and_a_hung_up_client_frees_its_slot() {
    let llm = spawn(&[("LOCAL_LLM_MAX_QUEUE", "1")]);
    let client = reqwest::Client::new();
    let long = json!({
        "model": MODEL,
        "prompt": "Tell me a very long story about a dragon.",
        "options": {"num_predict": 4000, "num_ctx": 4096, "temperature": 0.8, "seed": 1},
    });
    // A long streamed generation: read its first line, then keep it open.
    let response = client
        .post(format!("{}/api/generate", llm.base_url()))
        .json(&long)
        .send()
        .await
        .unwrap();
    let mut stream = response.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("\"done\":false"));

    // One more waits in the queue; the next is Ollama's overload answer.
    let queued = tokio::spawn({
        let (client, url, long) = (client.clone(), llm.base_url(), long.clone());
        async move {
            client
                .post(format!("{url}/api/generate"))
                .json(&long)
                .send()
                .await
        }
    });
    wait_for_metric(&llm, "local_llm_queue_depth", 1.0).await;
    let busy = client
        .post(format!("{}/api/generate", llm.base_url()))
        .json(&json!({"model": MODEL, "prompt": "hi", "stream": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(busy.status(), 503);
    let body: Value = busy.json().await.unwrap();
    assert_eq!(
        body["error"],
        "server busy, please try again.  maximum pending requests exceeded"
    );

    // Both long requests hang up: the running generation stops at its next
    // token, the waiting one is given up, and a new request starts at once.
    drop(stream);
    queued.abort();
    let _ = queued.await;
    let hung_up = std::time::Instant::now();
    wait_for_metric(&llm, ABANDONED, 2.0).await;
    eprintln!("the hang-ups were noticed within {:?}", hung_up.elapsed());
    let next = generate(&llm, "Say hello.", json!({"num_predict": 3})).await;
    let waited_ms = next["load_duration"].as_u64().unwrap() / 1_000_000;
    assert!(
        waited_ms < 1_000,
        "the next request waited {waited_ms} ms for the model"
    );
    let metrics = reqwest::get(format!("{}/metrics", llm.base_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let generated: f64 = metric(&metrics, "local_llm_generated_tokens_total");
    assert!(
        generated < 1000.0,
        "the abandoned generation stopped early: {generated} tokens"
    );
    assert!(
        metrics.contains("local_llm_generations_total{outcome=\"rejected\""),
        "{metrics}"
    );
    assert!(metrics.contains("local_llm_time_to_first_token_seconds_bucket"));
    assert!(metrics.contains("local_llm_queue_depth"));
}

/// Polls `/metrics` until the series `name` (see [`metric`]) has `value`.
async fn wait_for_metric(llm: &ServiceProcess, name: &str, value: f64) {
    let what = format!("{name} to be {value}");
    test_support::poll::until(&what, Duration::from_secs(10), || {
        let url = format!("{}/metrics", llm.base_url());
        async move {
            let body = reqwest::get(url).await.ok()?.text().await.ok()?;
            (metric(&body, name) == value).then_some(())
        }
    })
    .await;
}

/// Generations whose client hung up, as `/metrics` counts them.
const ABANDONED: &str = "local_llm_generations_total{outcome=\"abandoned\"";

/// The value of the first series of the Prometheus text `body` named
/// `name` (or starting with `name`'s labels, as in [`ABANDONED`]); 0 when
/// there is none yet.
fn metric(body: &str, name: &str) -> f64 {
    body.lines()
        .find_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            let rest = key.strip_prefix(name)?;
            (rest.is_empty() || rest.starts_with(['{', ',', '}']))
                .then(|| value.parse().ok())
                .flatten()
        })
        .unwrap_or(0.0)
}

#[test]
fn a_missing_or_corrupt_model_file_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let not_gguf = dir.path().join("notes.gguf");
    std::fs::write(&not_gguf, "hello").unwrap();
    // The default file's name with other bytes: its known digest is checked.
    let damaged = dir.path().join(local_llm::DEFAULT_MODEL_FILE);
    let real = std::fs::read(model_path()).unwrap();
    std::fs::write(&damaged, &real[..real.len() / 2]).unwrap();
    let cases = [
        (
            dir.path().join("absent.gguf"),
            "not found: run `bash scripts/fetch-model.sh`",
        ),
        (not_gguf, "is not a GGUF model"),
        (damaged, "is corrupt: its sha256 is"),
    ];
    for (path, expected) in cases {
        let output = Command::new(binary_path("local-llm"))
            .env("LOCAL_LLM_MODEL", &path)
            .env("LOCAL_LLM_PORT", "0")
            .env("LOCAL_LLM_LOG_LEVEL", "off")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(66), "{stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line: {stderr}");
        assert!(lines[0].starts_with("local-llm: model file "), "{stderr}");
        assert!(lines[0].contains(expected), "{stderr}");
    }
}

#[test]
fn the_benchmark_prints_speed_first_token_and_memory() {
    let out = tempfile::tempdir().unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/bench-local-llm.py");
    let output = Command::new("python3")
        .arg(script)
        .args(["--threads", "1", "--runs", "1", "--binary"])
        .arg(binary_path("local-llm"))
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("tokens/s"), "{stdout}");
    let report: Value =
        serde_json::from_slice(&std::fs::read(out.path().join("local-llm.json")).unwrap()).unwrap();
    let run = &report[0];
    assert_eq!(run["threads"], 1);
    assert!(
        run["tokens_per_sec_median"].as_f64().unwrap() > 0.0,
        "{run}"
    );
    assert!(
        run["first_token_ms_median"].as_f64().unwrap() > 0.0,
        "{run}"
    );
    let prompt = run["prompt_tokens"].as_u64().unwrap();
    assert!((40..=60).contains(&prompt), "a 50-token prompt: {prompt}");
    assert!(run["peak_rss_mb"].as_f64().unwrap() > 50.0, "{run}");
}
