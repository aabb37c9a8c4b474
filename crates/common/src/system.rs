//! Readings of the host the process runs on, and the thresholds they are
//! graded against: free space of a filesystem (`statvfs`) and available
//! memory (`/proc/meminfo`), in percent. The health aggregator's `disk` and
//! `memory` checks and `chatbot-ops daily-check` both read them here.

use std::path::Path;

use crate::config::AggregatorSettings;

/// How a reading compares with its thresholds (the `application/health+json`
/// draft's levels, serialized `pass`, `warn`, `fail`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Healthy.
    Pass,
    /// Working, but past a warning threshold.
    Warn,
    /// Not usable.
    Fail,
}

/// Lower-is-worse thresholds, in percent.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    /// Under this, warn.
    pub warn: f64,
    /// Under this, fail.
    pub fail: f64,
}

impl Thresholds {
    /// `aggregator.disk_warn_free_percent` / `disk_fail_free_percent`.
    pub fn disk(settings: &AggregatorSettings) -> Self {
        Self {
            warn: settings.disk_warn_free_percent,
            fail: settings.disk_fail_free_percent,
        }
    }

    /// `aggregator.memory_warn_available_percent` / `memory_fail_available_percent`.
    pub fn memory(settings: &AggregatorSettings) -> Self {
        Self {
            warn: settings.memory_warn_available_percent,
            fail: settings.memory_fail_available_percent,
        }
    }

    /// The level of `percent`: under `fail` fails, under `warn` warns.
    pub fn level(&self, percent: f64) -> Level {
        if percent < self.fail {
            Level::Fail
        } else if percent < self.warn {
            Level::Warn
        } else {
            Level::Pass
        }
    }
}

/// Free space of the filesystem holding `path`, in percent of its size (the
/// blocks available to unprivileged users, as `df` shows them).
pub fn free_percent(path: &Path) -> Result<f64, String> {
    let stats = rustix::fs::statvfs(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if stats.f_blocks == 0 {
        return Err(format!("{}: filesystem reports no blocks", path.display()));
    }
    // Blocks are counted in u64; percentages need no more precision than f64 has.
    #[allow(clippy::cast_precision_loss)]
    Ok(stats.f_bavail as f64 * 100.0 / stats.f_blocks as f64)
}

/// `MemAvailable / MemTotal` in percent, from `/proc/meminfo`.
pub fn available_memory_percent() -> Result<f64, String> {
    let meminfo =
        std::fs::read_to_string("/proc/meminfo").map_err(|e| format!("/proc/meminfo: {e}"))?;
    let field = |name: &str| {
        meminfo
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .ok_or_else(|| format!("/proc/meminfo has no {name}"))
    };
    let total = field("MemTotal:")?;
    Ok(field("MemAvailable:")? * 100.0 / total.max(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_grade_lower_values_worse() {
        let t = Thresholds {
            warn: 20.0,
            fail: 5.0,
        };
        assert_eq!(t.level(50.0), Level::Pass);
        assert_eq!(t.level(20.0), Level::Pass);
        assert_eq!(t.level(10.0), Level::Warn);
        assert_eq!(t.level(1.0), Level::Fail);
    }

    #[test]
    fn system_readings_are_percentages() {
        let disk = free_percent(Path::new("/")).unwrap_or(-1.0);
        assert!((0.0..=100.0).contains(&disk), "{disk}");
        let memory = available_memory_percent().unwrap_or(-1.0);
        assert!((0.0..=100.0).contains(&memory), "{memory}");
        assert!(free_percent(Path::new("/no/such/path")).is_err());
    }
}
