//! The health verdict, one type for everyone who touches it: the health
//! aggregator builds it, the gateway relays it (whole, or as its public
//! [`Summary`]), and `chatbot-ops` reads it.
//!
//! ```json
//! {"status": "OK|WARN|ERROR", "timestamp": "…", "version": "0.1.0",
//!  "services": {"redis": {"status": "OK", "responseTime": 1.2, "error": null,
//!                         "required": true, "checkedAt": "…"}, …},
//!  "checks": {"redis:responseTime": [{"componentType": "datastore",
//!             "observedValue": 1.2, "observedUnit": "ms", "status": "pass",
//!             "time": "…"}], …}}
//! ```
//!
//! `services` is the operations documentation's shape; `checks` follows the
//! `application/health+json` draft.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::system::Level;

/// The media type of the verdict.
pub const MEDIA_TYPE: &str = "application/health+json";

/// A verdict's or a component's status, worst last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
pub enum Status {
    /// Everything works.
    #[serde(rename = "OK")]
    Ok,
    /// Working, with something to look at.
    #[serde(rename = "WARN")]
    Warn,
    /// Something required does not work.
    #[serde(rename = "ERROR")]
    Error,
}

impl Status {
    /// `OK`, `WARN` or `ERROR`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::Warn => "WARN",
            Self::Error => "ERROR",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Level> for Status {
    fn from(level: Level) -> Self {
        match level {
            Level::Pass => Self::Ok,
            Level::Warn => Self::Warn,
            Level::Fail => Self::Error,
        }
    }
}

/// A component in the `services` map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEntry {
    /// The component's status.
    pub status: Status,
    /// Duration of the check, in milliseconds.
    pub response_time: f64,
    /// Why it warned or failed.
    pub error: Option<String>,
    /// Whether it can make the verdict `ERROR`.
    pub required: bool,
    /// When it was checked.
    pub checked_at: DateTime<Utc>,
}

/// One measurement in the `checks` map (health+json).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckEntry {
    /// health+json component type (`datastore`, `system`, …).
    pub component_type: String,
    /// The value.
    pub observed_value: f64,
    /// Its unit.
    pub observed_unit: String,
    /// `pass`, `warn` or `fail`.
    pub status: Level,
    /// When it was observed.
    pub time: DateTime<Utc>,
    /// Why it warned or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
}

/// The whole verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Verdict {
    /// The worst status of the components (an optional one counts as `WARN`
    /// at worst).
    pub status: Status,
    /// When this verdict was served.
    pub timestamp: DateTime<Utc>,
    /// The aggregator's version.
    pub version: String,
    /// Per component.
    pub services: BTreeMap<String, ServiceEntry>,
    /// Per measurement, health+json style.
    #[serde(default)]
    pub checks: BTreeMap<String, Vec<CheckEntry>>,
}

/// What anonymous callers of the gateway's `/health` see.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Summary<'a> {
    /// The verdict's status.
    pub status: Status,
    /// When it was served.
    pub timestamp: DateTime<Utc>,
    /// The aggregator's version.
    pub version: &'a str,
}

impl Verdict {
    /// An `ERROR` verdict naming `component` (the aggregator, seen from the
    /// gateway) as unreachable, for `reason`.
    pub fn unreachable(component: &str, reason: impl fmt::Display) -> Self {
        let now = Utc::now();
        let entry = ServiceEntry {
            status: Status::Error,
            response_time: 0.0,
            error: Some(format!("the {component} is unreachable: {reason}")),
            required: true,
            checked_at: now,
        };
        Self {
            status: Status::Error,
            timestamp: now,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            services: [(component.to_owned(), entry)].into_iter().collect(),
            checks: BTreeMap::new(),
        }
    }

    /// Status, time and version only.
    pub fn summary(&self) -> Summary<'_> {
        Summary {
            status: self.status,
            timestamp: self.timestamp,
            version: &self.version,
        }
    }

    /// The components that are not `OK`, with their reasons.
    pub fn problems(&self) -> impl Iterator<Item = (&str, &ServiceEntry)> {
        self.services
            .iter()
            .filter(|(_, entry)| entry.status != Status::Ok)
            .map(|(name, entry)| (name.as_str(), entry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_names_round_trip() {
        let verdict = Verdict::unreachable("health-aggregator", "connection refused");
        let json = serde_json::to_value(&verdict).unwrap_or_default();
        assert_eq!(json["status"], "ERROR");
        let entry = &json["services"]["health-aggregator"];
        assert_eq!(entry["responseTime"], 0.0);
        assert_eq!(entry["required"], true);
        assert!(
            entry["error"]
                .as_str()
                .is_some_and(|e| e.contains("unreachable: connection refused")),
            "{entry}"
        );
        let back: Result<Verdict, _> = serde_json::from_value(json);
        assert_eq!(back.ok(), Some(verdict.clone()));
        let summary = serde_json::to_value(verdict.summary()).unwrap_or_default();
        assert_eq!(
            summary.as_object().map(|o| o.len()),
            Some(3),
            "status, timestamp, version: {summary}"
        );
    }
}
