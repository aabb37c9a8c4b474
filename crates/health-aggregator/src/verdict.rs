//! The verdict: the cached check results turned into the `/health` body, a
//! [`chatbot_common::verdict::Verdict`] (whose docs show its shape).
//!
//! A required component that fails makes
//! the verdict `ERROR`; an optional one that fails, or any warning, makes it
//! `WARN`. A result older than the staleness limit counts as failed.

use std::collections::BTreeMap;
use std::time::Duration;

use chatbot_common::verdict::{CheckEntry, ServiceEntry, Verdict};
use chrono::{DateTime, Utc};

use crate::checks::{Level, Observation};

/// One component's last result, as the poller keeps it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// What was seen.
    pub observation: Observation,
    /// How long the check took.
    pub duration: Duration,
    /// When it finished.
    pub checked_at: DateTime<Utc>,
    /// Required component or optional.
    pub required: bool,
    /// health+json `componentType`.
    pub kind: &'static str,
}

/// Builds the verdict at `now` from the recorded results of `expected`
/// components; a missing or stale result counts as failed.
pub fn verdict(
    expected: &[(String, bool, &'static str)],
    records: &BTreeMap<String, Recorded>,
    now: DateTime<Utc>,
    stale_after: Duration,
) -> Verdict {
    let mut services = BTreeMap::new();
    let mut checks = BTreeMap::new();
    let mut overall = Level::Pass;
    for (name, required, kind) in expected {
        let record = effective(records.get(name), *required, kind, now, stale_after);
        let level = record.observation.level;
        overall = overall.max(match (level, record.required) {
            (Level::Fail, false) => Level::Warn,
            (level, _) => level,
        });
        add_checks(&mut checks, name, &record);
        services.insert(
            name.clone(),
            ServiceEntry {
                status: level.into(),
                response_time: millis(record.duration),
                error: (level != Level::Pass)
                    .then(|| record.observation.output.clone())
                    .flatten(),
                required: record.required,
                checked_at: record.checked_at,
            },
        );
    }
    Verdict {
        status: overall.into(),
        timestamp: now,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        services,
        checks,
    }
}

/// The record as it counts now: missing means not checked yet, too old means stale.
fn effective(
    record: Option<&Recorded>,
    required: bool,
    kind: &'static str,
    now: DateTime<Utc>,
    stale_after: Duration,
) -> Recorded {
    let failed = |reason: String, checked_at| Recorded {
        observation: Observation {
            level: Level::Fail,
            value: None,
            output: Some(reason),
        },
        duration: Duration::ZERO,
        checked_at,
        required,
        kind,
    };
    match record {
        None => failed("not checked yet".into(), now),
        Some(r) if (now - r.checked_at).to_std().unwrap_or_default() > stale_after => failed(
            format!("stale: last checked at {}", r.checked_at.to_rfc3339()),
            r.checked_at,
        ),
        Some(r) => r.clone(),
    }
}

fn add_checks(checks: &mut BTreeMap<String, Vec<CheckEntry>>, name: &str, record: &Recorded) {
    let level = record.observation.level;
    let entry = |value, unit: &str| CheckEntry {
        component_type: record.kind.to_owned(),
        observed_value: value,
        observed_unit: unit.to_owned(),
        status: level,
        time: record.checked_at,
        output: (level != Level::Pass)
            .then(|| record.observation.output.clone())
            .flatten(),
    };
    checks.insert(
        format!("{name}:responseTime"),
        vec![entry(millis(record.duration), "ms")],
    );
    if let Some((measurement, value, unit)) = record.observation.value {
        checks.insert(format!("{name}:{measurement}"), vec![entry(value, unit)]);
    }
}

fn millis(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatbot_common::verdict::Status;

    fn record(level: Level, required: bool, age_secs: i64) -> Recorded {
        Recorded {
            observation: Observation {
                level,
                value: None,
                output: (level != Level::Pass).then(|| "broken".to_owned()),
            },
            duration: Duration::from_millis(3),
            checked_at: Utc::now() - chrono::Duration::seconds(age_secs),
            required,
            kind: "component",
        }
    }

    fn status_of(components: &[(&str, Level, bool, i64)]) -> Status {
        let expected: Vec<_> = components
            .iter()
            .map(|(n, _, r, _)| ((*n).to_owned(), *r, "component"))
            .collect();
        let records = components
            .iter()
            .map(|(n, l, r, age)| ((*n).to_owned(), record(*l, *r, *age)))
            .collect();
        verdict(&expected, &records, Utc::now(), Duration::from_secs(90)).status
    }

    #[test]
    fn required_failures_are_errors_and_optional_ones_warnings() {
        assert_eq!(
            status_of(&[
                ("redis", Level::Pass, true, 0),
                ("n8n", Level::Pass, false, 0)
            ]),
            Status::Ok
        );
        assert_eq!(
            status_of(&[
                ("redis", Level::Fail, true, 0),
                ("n8n", Level::Pass, false, 0)
            ]),
            Status::Error
        );
        assert_eq!(
            status_of(&[
                ("redis", Level::Pass, true, 0),
                ("n8n", Level::Fail, false, 0)
            ]),
            Status::Warn
        );
        assert_eq!(status_of(&[("disk", Level::Warn, true, 0)]), Status::Warn);
    }

    #[test]
    fn stale_and_missing_results_count_as_failed() {
        assert_eq!(
            status_of(&[("redis", Level::Pass, true, 91)]),
            Status::Error
        );
        let expected = vec![("redis".to_owned(), true, "datastore")];
        let v = verdict(
            &expected,
            &BTreeMap::new(),
            Utc::now(),
            Duration::from_secs(90),
        );
        assert_eq!(v.status, Status::Error);
        assert_eq!(
            v.services["redis"].error.as_deref(),
            Some("not checked yet")
        );
    }

    #[test]
    fn checks_follow_the_health_json_draft() {
        let expected = vec![("redis".to_owned(), true, "datastore")];
        let redis = Recorded {
            kind: "datastore",
            ..record(Level::Pass, true, 0)
        };
        let records = [("redis".to_owned(), redis)].into_iter().collect();
        let v = verdict(&expected, &records, Utc::now(), Duration::from_secs(90));
        let json = serde_json::to_value(&v).unwrap_or_default();
        let check = &json["checks"]["redis:responseTime"][0];
        assert_eq!(check["observedUnit"], "ms");
        assert_eq!(check["status"], "pass");
        assert_eq!(check["componentType"], "datastore");
        assert_eq!(json["services"]["redis"]["responseTime"], 3.0);
    }
}
