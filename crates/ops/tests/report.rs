//! `chatbot-ops report daily|weekly` against a real PostgreSQL with seeded
//! rows over several days, users, urgencies and errors: the figures it prints
//! match the ones computed here from the seeded rows, independently of SQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime};
use serde_json::Value;
use test_support::app::connect;

/// One seeded exchange.
struct Row {
    at: NaiveDateTime,
    user: String,
    ms: i32,
    urgency: &'static str,
    error: Option<&'static str>,
}

/// The day the reports are asked for.
fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 19).unwrap()
}

/// Deterministic rows from ten days before `day()` up to its end.
fn seed_rows() -> Vec<Row> {
    let mut state: u64 = 42;
    let mut next = move |n: u64| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        (state >> 33) % n
    };
    let start = (day() - Duration::days(10)).and_hms_opt(0, 0, 0).unwrap();
    (0..400)
        .map(|_| Row {
            at: start + Duration::minutes(next(11 * 24 * 60) as i64),
            user: format!("user-{}", next(25)),
            ms: 20 + next(3000) as i32,
            urgency: ["LOW", "NORMAL", "NORMAL", "HIGH"][next(4) as usize],
            error: (next(10) == 0).then_some("llm down"),
        })
        .collect()
}

async fn seeded_database(rows: &[Row]) -> String {
    let url = support::migrated_database().await;
    let db = connect(&url).await;
    for row in rows {
        db.execute(
            "INSERT INTO messages (id, session_id, user_id, timestamp, type, urgency, message,
                reply, model, response_time, error)
             VALUES (gen_random_uuid(), gen_random_uuid(), $1, $2::timestamp AT TIME ZONE 'UTC',
                'question', $3, 'm', 'r', 'llama3.2:1b', $4, $5)",
            &[&row.user, &row.at, &row.urgency, &row.ms, &row.error],
        )
        .await
        .unwrap();
    }
    url
}

/// Runs `chatbot-ops report ARGS` against `url`; its exit code and stdout.
fn ops(url: &str, args: &[&str]) -> (i32, String, String) {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config");
    let output = Command::new(env!("CARGO_BIN_EXE_chatbot-ops"))
        .args(args)
        .env("CHATBOT_CONFIG_DIR", config)
        .env("CHATBOT__DATABASE__URL", url)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `PERCENTILE_CONT(p)`: linear interpolation between the sorted values.
fn percentile_cont(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let rank = p * (values.len() - 1) as f64;
    let (low, high) = (rank.floor() as usize, rank.ceil() as usize);
    values[low] + (rank - low as f64) * (values[high] - values[low])
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6 * b.abs().max(1.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_match_figures_computed_from_the_seeded_rows() {
    let rows = seed_rows();
    let url = seeded_database(&rows).await;
    let date = day().to_string();

    // Daily: every day since the day before `date`, one line a day.
    let (code, out, err) = ops(&url, &["report", "daily", "--date", &date, "--json"]);
    assert_eq!(code, 0, "{err}");
    let daily: Vec<Value> = serde_json::from_str(&out).unwrap();
    let mut expected: BTreeMap<NaiveDate, Vec<&Row>> = BTreeMap::new();
    for row in rows
        .iter()
        .filter(|r| r.at.date() >= day() - Duration::days(1))
    {
        expected.entry(row.at.date()).or_default().push(row);
    }
    assert_eq!(daily.len(), expected.len(), "{daily:?}");
    for (line, (date, day_rows)) in daily.iter().zip(&expected) {
        let users: BTreeSet<_> = day_rows.iter().map(|r| &r.user).collect();
        let avg = day_rows.iter().map(|r| f64::from(r.ms)).sum::<f64>() / day_rows.len() as f64;
        let urgent = day_rows.iter().filter(|r| r.urgency == "HIGH").count();
        assert_eq!(line["date"], date.to_string());
        assert_eq!(line["total_messages"], day_rows.len());
        assert_eq!(line["active_users"], users.len());
        assert!(
            close(line["avg_response_time"].as_f64().unwrap(), avg),
            "{line}: {avg}"
        );
        assert_eq!(line["urgent_messages"], urgent);
    }

    // Weekly: the last seven days, one line per week (weeks start on Monday).
    let (code, out, err) = ops(&url, &["report", "weekly", "--date", &date, "--json"]);
    assert_eq!(code, 0, "{err}");
    let weekly: Vec<Value> = serde_json::from_str(&out).unwrap();
    let mut weeks: BTreeMap<NaiveDate, Vec<&Row>> = BTreeMap::new();
    let since = (day() - Duration::days(7)).and_hms_opt(0, 0, 0).unwrap();
    for row in rows.iter().filter(|r| r.at >= since) {
        let date = row.at.date();
        let monday = date - Duration::days(i64::from(date.weekday().num_days_from_monday()));
        weeks.entry(monday).or_default().push(row);
    }
    assert_eq!(weekly.len(), weeks.len(), "{weekly:?}");
    for (line, (monday, week_rows)) in weekly.iter().zip(&weeks) {
        let mut times: Vec<f64> = week_rows.iter().map(|r| f64::from(r.ms)).collect();
        let p95 = percentile_cont(&mut times, 0.95);
        let users: BTreeSet<_> = week_rows.iter().map(|r| &r.user).collect();
        let errors = week_rows.iter().filter(|r| r.error.is_some()).count();
        assert!(
            line["week"]
                .as_str()
                .unwrap()
                .starts_with(&monday.to_string()),
            "{line}: week of {monday}"
        );
        assert_eq!(line["total_messages"], week_rows.len());
        assert!(
            close(line["p95_response_time"].as_f64().unwrap(), p95),
            "{line}: {p95}"
        );
        assert_eq!(line["errors"], errors);
        assert_eq!(line["weekly_active_users"], users.len());
    }

    // The same figures as a table and as CSV.
    let (code, table, _) = ops(&url, &["report", "weekly", "--date", &date]);
    assert_eq!(code, 0);
    assert!(
        table.starts_with("weekly performance report\nweek "),
        "{table}"
    );
    assert_eq!(table.lines().count(), 2 + weeks.len() + 2, "{table}");
    let (code, csv, _) = ops(
        &url,
        &["report", "daily", "--date", &date, "--format", "csv"],
    );
    assert_eq!(code, 0);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("date,total_messages,active_users,avg_response_time,urgent_messages")
    );
    assert_eq!(lines.count(), expected.len());
}

#[test]
fn an_unreachable_database_is_one_line_and_exit_3() {
    let port = test_support::free_port();
    let url = format!("postgres://chatbot@127.0.0.1:{port}/chatbot");
    let (code, out, err) = ops(&url, &["report", "daily"]);
    assert_eq!(code, 3, "{out}{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("chatbot-ops: PostgreSQL: "), "{err}");
}

#[test]
fn a_bad_date_is_a_usage_error() {
    let (code, _, err) = ops(
        "postgres://x@127.0.0.1:1/x",
        &["report", "daily", "--date", "yesterday"],
    );
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("invalid value 'yesterday'"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_made_listed_revoked_and_reports_filter_by_key() {
    let rows = seed_rows();
    let url = seeded_database(&rows).await;
    let (code, made, err) = ops(
        &url,
        &[
            "keys", "create", "--name", "team-a", "--rpm", "30", "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let made: serde_json::Value = serde_json::from_str(&made).unwrap();
    let key = made["key"].as_str().unwrap();
    assert!(key.starts_with("cbk_") && key.len() == 47, "{key}");
    assert_eq!(made["limits"]["requests_per_minute"], 30);
    let (code, _, err) = ops(&url, &["keys", "create", "--name", "team-a"]);
    assert_eq!(
        (code, err.trim()),
        (64, "chatbot-ops: an active key is already named 'team-a'")
    );

    // team-a sent the messages of users 0 to 4.
    let db = connect(&url).await;
    let id = made["id"].as_str().unwrap();
    db.execute(
        "UPDATE messages SET api_key_id = $1::text::uuid WHERE user_id IN ('user-0','user-1','user-2','user-3','user-4')",
        &[&id],
    )
    .await
    .unwrap();
    let date = day().to_string();
    let total = |args: &[&str]| -> i64 {
        let (code, out, err) = ops(&url, args);
        assert_eq!(code, 0, "{err}");
        let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
        rows.as_array()
            .unwrap()
            .iter()
            .map(|r| r["total_messages"].as_i64().unwrap())
            .sum()
    };
    let week_start = day() - Duration::days(7);
    let expected = rows
        .iter()
        .filter(|r| r.at.date() >= week_start && (0..5).any(|u| r.user == format!("user-{u}")))
        .count() as i64;
    assert!(expected > 0);
    assert_eq!(
        total(&[
            "report", "weekly", "--date", &date, "--key", "team-a", "--json"
        ]),
        expected
    );
    assert_eq!(
        total(&[
            "report", "weekly", "--date", &date, "--key", "nobody", "--json"
        ]),
        0
    );

    let (code, out, _) = ops(&url, &["keys", "revoke", "team-a"]);
    assert_eq!(code, 0);
    assert!(out.contains("team-a"), "{out}");
    let (code, _, err) = ops(&url, &["keys", "revoke", "team-a"]);
    assert_eq!(code, 2, "nothing left to revoke: {err}");
    let (_, listed, _) = ops(&url, &["keys", "list", "--json"]);
    assert!(!listed.contains(key), "a listing never shows a key");
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert!(listed[0]["revoked_at"].is_string());
    // The revoked key still names its messages in reports.
    assert_eq!(
        total(&[
            "report", "weekly", "--date", &date, "--key", "team-a", "--json"
        ]),
        expected
    );
}
