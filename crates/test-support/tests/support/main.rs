//! Tests of the test-support crate itself: the throwaway servers start, stop
//! and start again, the n8n stand-in records what it is sent, and service
//! processes are recognised as ready.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use test_support::{
    N8nStandIn, ServiceProcess, TestPostgres, TestRedis, free_port, fresh_prefix, shared_postgres,
    shared_redis,
};
use tokio::net::TcpStream;
use tokio_postgres::NoTls;

/// Connects to `url` and runs `SELECT 1`.
async fn select_one(url: &str) -> Result<i32, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    let conn = tokio::spawn(connection);
    let row = client.query_one("SELECT 1", &[]).await?;
    drop(client);
    let _ = conn.await;
    Ok(row.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_starts_stops_and_starts_again() {
    let pg = TestPostgres::start();
    assert_ne!(
        pg.port(),
        5432,
        "must never use the machine's PostgreSQL port"
    );
    assert!(pg.is_running());

    let url = pg.fresh_database().await;
    assert!(
        url.starts_with(&format!("postgres://postgres@127.0.0.1:{}/t_", pg.port())),
        "{url}"
    );
    assert_eq!(select_one(&url).await.unwrap(), 1);

    pg.stop();
    assert!(!pg.is_running());
    assert!(
        select_one(&url).await.is_err(),
        "connecting to a stopped server must fail"
    );

    pg.start_again();
    assert_eq!(
        select_one(&url).await.unwrap(),
        1,
        "data survives a restart"
    );

    pg.restart();
    assert_eq!(select_one(&url).await.unwrap(), 1);

    let dir = pg.dir().to_path_buf();
    assert!(dir.exists());
    drop(pg);
    assert!(!dir.exists(), "drop removes the cluster's directory");
    assert!(select_one(&url).await.is_err(), "drop stops the server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_postgres_gives_isolated_databases() {
    let pg = shared_postgres();
    assert!(std::ptr::eq(pg, shared_postgres()));
    assert_ne!(pg.port(), 5432);
    let a = pg.fresh_database().await;
    let b = pg.fresh_database().await;
    assert_ne!(a, b);
    assert_eq!(select_one(&a).await.unwrap(), 1);
    assert_eq!(select_one(&b).await.unwrap(), 1);

    // A table made in one database is not visible in the other.
    let client = pg.client(a.rsplit('/').next().unwrap()).await;
    client
        .batch_execute("CREATE TABLE only_here (x int)")
        .await
        .unwrap();
    let (other, connection) = tokio_postgres::connect(&b, NoTls).await.unwrap();
    tokio::spawn(connection);
    assert!(other.query("SELECT * FROM only_here", &[]).await.is_err());
}

#[test]
fn redis_starts_stops_and_starts_again() {
    let redis = TestRedis::start();
    assert_ne!(
        redis.port(),
        6379,
        "must never use the machine's Redis port"
    );
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{}", redis.port()));
    assert!(redis.ping());

    let port = redis.port();
    redis.stop();
    assert!(!redis.is_running());
    assert!(!redis.ping(), "a stopped server must not answer");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());

    redis.start_again();
    assert_eq!(redis.port(), port);
    assert!(redis.ping());

    let dir = redis.dir().to_path_buf();
    drop(redis);
    assert!(!dir.exists(), "drop removes the server's directory");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn shared_redis_answers_and_prefixes_are_unique() {
    let redis = shared_redis();
    assert!(std::ptr::eq(redis, shared_redis()));
    assert_ne!(redis.port(), 6379);
    assert!(redis.ping());
    let (a, b) = (fresh_prefix(), fresh_prefix());
    assert_ne!(a, b);
    assert!(a.starts_with("t:") && a.ends_with(':'), "{a}");
}

/// Sends `request` and returns (status, body).
async fn http(request: reqwest::RequestBuilder) -> (u16, String) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn n8n_stand_in_records_webhook_bodies() {
    let n8n = N8nStandIn::start().await;
    let port = n8n.addr().port();
    let base = n8n.base_url();
    assert_eq!(base, format!("http://127.0.0.1:{port}"));
    assert_eq!(n8n.webhook_url(), format!("{base}/webhook/chatbot-urgent"));
    assert!(n8n.received().is_empty());
    let client = reqwest::Client::new();
    let post = |path: &str, body: &'static str| {
        client
            .post(format!("{base}{path}"))
            .header("Content-Type", "application/json")
            .header("X-Test", "yes")
            .body(body)
    };

    let (status, body) = http(client.get(n8n.health_url())).await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));

    let sent = r#"{"session_id":"s1","text":"help"}"#;
    let (status, body) = http(post("/webhook/chatbot-urgent", sent)).await;
    assert_eq!((status, body.as_str()), (200, r#"{"ok":true}"#));
    assert_eq!(
        n8n.received(),
        vec![serde_json::json!({"session_id": "s1", "text": "help"})]
    );
    let requests = n8n.requests();
    assert_eq!(requests[0].path, "/webhook/chatbot-urgent");
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].header("X-TEST"), Some("yes"));

    // A request from another task while we wait.
    let other = post("/webhook/other?x=1", r#"{"a":1}"#);
    let sender = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        http(other).await
    });
    let got = n8n.wait_for(2, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 2);
    assert_eq!(got[1], serde_json::json!({"a": 1}));
    assert_eq!(sender.await.unwrap().0, 200);
    assert_eq!(n8n.requests()[1].path, "/webhook/other");

    // wait_for gives up at its timeout with what it has.
    let got = n8n.wait_for(3, Duration::from_millis(100)).await;
    assert_eq!(got.len(), 2);

    // Failure modes for tests of retries and health checks.
    n8n.set_webhook_status(500);
    let (status, _) = http(post("/webhook/x", "{}")).await;
    assert_eq!(status, 500);
    assert_eq!(n8n.received().len(), 3, "failed attempts are recorded too");
    n8n.set_healthy(false);
    assert_eq!(http(client.get(n8n.health_url())).await.0, 503);
    assert_eq!(http(client.get(format!("{base}/nope"))).await.0, 404);

    n8n.stop();
    test_support::poll::until(
        "the port to be released",
        Duration::from_secs(5),
        || async {
            TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err()
                .then_some(())
        },
    )
    .await;
}

/// Writes an executable shell script standing in for a service binary.
fn write_script(dir: &Path, name: &str, body: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    let mut file = std::fs::File::create(&path).unwrap();
    writeln!(file, "#!/bin/sh\n{body}").unwrap();
    drop(file);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn service_process_waits_for_listening_and_terminates() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let script = write_script(
        dir.path(),
        "fake-service",
        &format!(
            r#"trap 'echo "{{\"message\":\"stopped\"}}"; exit 0' TERM
echo "starting with $GREETING" >&2
echo 'not json'
echo '{{"level":"INFO","fields":{{"message":"listening","addr":"127.0.0.1:{port}"}}}}'
while true; do sleep 0.1; done"#
        ),
    );
    let mut service =
        ServiceProcess::spawn_path(&script, &[("GREETING".to_owned(), "hello".to_owned())]);
    assert_eq!(service.port(), port);
    assert_eq!(service.addr().to_string(), format!("127.0.0.1:{port}"));
    assert_eq!(service.base_url(), format!("http://127.0.0.1:{port}"));
    assert_eq!(service.name(), "fake-service");
    assert!(service.is_running());
    assert!(
        service
            .wait_for_log("starting with hello", Duration::from_secs(5))
            .is_some(),
        "stderr is captured, env is passed: {:?}",
        service.logs()
    );
    assert!(service.logs().iter().any(|l| l == "not json"));

    let status = service.terminate();
    assert!(status.success(), "{status}");
    assert!(!service.is_running());
    assert!(
        service.logs().iter().any(|l| l.contains("stopped")),
        "{:?}",
        service.logs()
    );
}

#[test]
fn service_process_that_exits_early_panics_with_its_output() {
    let dir = tempfile::tempdir().unwrap();
    let script = write_script(
        dir.path(),
        "broken-service",
        "echo 'bad config' >&2; exit 3",
    );
    let result = std::panic::catch_unwind(|| ServiceProcess::spawn_path(&script, &[]));
    let payload = result.expect_err("spawning a service that exits must panic");
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(message.contains("exited"), "{message}");
    assert!(message.contains("bad config"), "{message}");
}

#[test]
fn missing_binary_panics_clearly() {
    let result = std::panic::catch_unwind(|| ServiceProcess::spawn("no-such-chatbot-binary", &[]));
    let payload = result.expect_err("a missing binary must panic");
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(message.contains("not found"), "{message}");
}
