//! The operations documentation's two report queries (as `chatbot-ops
//! report` holds them) run verbatim against our schema, with the real
//! `CURRENT_DATE`, and give the right figures.

use chatbot_ops::report::{DAILY, WEEKLY};

use crate::Stack;

/// Runs `sql` verbatim (simple protocol, so NUMERIC comes back as text).
async fn report(db: &tokio_postgres::Client, sql: &str) -> Vec<Vec<String>> {
    db.simple_query(sql)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).unwrap_or("").to_owned())
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

fn num(text: &str) -> f64 {
    text.parse()
        .unwrap_or_else(|_| panic!("not a number: {text}"))
}

/// Inserts a row `at` (an SQL timestamp expression).
async fn insert(
    db: &tokio_postgres::Client,
    at: &str,
    user: &str,
    ms: i32,
    urgency: &str,
    error: Option<&str>,
) {
    let sql = format!(
        "INSERT INTO messages (id, session_id, user_id, timestamp, type, urgency, message, reply,
            model, response_time, error)
         VALUES (gen_random_uuid(), gen_random_uuid(), $1, {at}, 'question', $2, 'm', 'r',
            'llama3.2:1b', $3, $4)"
    );
    db.execute(&sql, &[&user, &urgency, &ms, &error])
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_report_counts_today_and_yesterday() {
    let stack = Stack::start().await;
    let db = stack.db().await;
    let today = "CURRENT_DATE + INTERVAL '1 minute'";
    insert(&db, today, "a", 100, "HIGH", None).await;
    insert(&db, today, "a", 200, "NORMAL", None).await;
    insert(&db, today, "b", 600, "HIGH", Some("llm down")).await;
    insert(
        &db,
        "CURRENT_DATE - INTERVAL '12 hours'",
        "c",
        50,
        "LOW",
        None,
    )
    .await;
    insert(
        &db,
        "CURRENT_DATE - INTERVAL '3 days'",
        "d",
        999,
        "HIGH",
        None,
    )
    .await;

    let mut days = report(&db, DAILY).await;
    days.sort();
    assert_eq!(
        days.len(),
        2,
        "yesterday and today; three days ago is outside: {days:?}"
    );
    let figures = |d: &Vec<String>| (num(&d[1]), num(&d[2]), num(&d[3]), num(&d[4]));
    assert_eq!(figures(&days[1]), (3.0, 2.0, 300.0, 2.0), "today: {days:?}");
    assert_eq!(
        figures(&days[0]),
        (1.0, 1.0, 50.0, 0.0),
        "yesterday: {days:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_weekly_report_gives_p95_and_errors() {
    let stack = Stack::start().await;
    let db = stack.db().await;
    for (i, (user, ms, error)) in [
        ("a", 100, None),
        ("a", 200, None),
        ("b", 300, Some("timeout")),
        ("c", 400, None),
        ("c", 1000, Some("llm down")),
    ]
    .into_iter()
    .enumerate()
    {
        let at = format!("CURRENT_DATE + INTERVAL '{i} minutes'");
        insert(&db, &at, user, ms, "NORMAL", error).await;
    }
    insert(
        &db,
        "CURRENT_DATE - INTERVAL '10 days'",
        "z",
        5000,
        "NORMAL",
        Some("old"),
    )
    .await;

    let weeks = report(&db, WEEKLY).await;
    assert_eq!(weeks.len(), 1, "one week, the old row excluded: {weeks:?}");
    let week = &weeks[0];
    assert_eq!(num(&week[1]), 5.0);
    // PERCENTILE_CONT(0.95) over 100, 200, 300, 400, 1000: 400 + 0.8 * 600.
    assert!((num(&week[2]) - 880.0).abs() < 1e-9, "{week:?}");
    assert_eq!(num(&week[3]), 2.0);
    assert_eq!(num(&week[4]), 3.0);
}
