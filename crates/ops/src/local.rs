//! Checks of this host: free disk space on the data, log and backup paths,
//! available memory, each service's state, and the age of the newest good
//! backup.

use std::path::{Path, PathBuf};

use chatbot_common::config::Settings;
use chatbot_common::system::{self, Thresholds};
use chrono::{DateTime, Utc};

use crate::catalog::{self, Backup};
use crate::check::{Row, Status};
use crate::http;

/// Present when systemd runs this host (`sd_booted(3)`).
const SYSTEMD: &str = "/run/systemd/system";

/// The aggregator's unit and row name; the other services are the keys of
/// `aggregator.services`.
const AGGREGATOR: &str = "health-aggregator";

/// The paths whose filesystems are checked, each with the setting that names
/// it: `aggregator.disk_paths`, `log.dir`, `ops.backup.dir` (a path named
/// twice is checked once).
pub fn disk_paths(settings: &Settings) -> Vec<(PathBuf, &'static str)> {
    let mut paths: Vec<(PathBuf, &'static str)> = Vec::new();
    let named = settings
        .aggregator
        .disk_paths
        .iter()
        .map(|p| (p.clone(), "aggregator.disk_paths"))
        .chain(settings.log.dir.clone().map(|p| (p, "log.dir")))
        .chain([(settings.ops.backup.dir.clone(), "ops.backup.dir")]);
    for (path, setting) in named {
        if !paths.iter().any(|(seen, _)| *seen == path) {
            paths.push((path, setting));
        }
    }
    paths
}

/// One row per [`disk_paths`] entry, against the aggregator's thresholds.
pub fn disks(settings: &Settings) -> Vec<Row> {
    let thresholds = Thresholds::disk(&settings.aggregator);
    disk_paths(settings)
        .into_iter()
        .map(|(path, setting)| disk(&path, setting, thresholds))
        .collect()
}

/// Free space of `path`'s filesystem; a path not created yet is measured on
/// its nearest existing parent, where it will be created.
fn disk(path: &Path, setting: &str, thresholds: Thresholds) -> Row {
    let check = format!("disk {}", path.display());
    let measured = path.ancestors().find(|p| p.exists()).unwrap_or(path);
    let free = match system::free_percent(measured) {
        Ok(free) => free,
        Err(error) => return Row::unchecked(check, error),
    };
    let mut detail = format!(
        "{setting}; warn under {}%, fail under {}% free",
        thresholds.warn, thresholds.fail
    );
    if measured != path {
        detail.push_str(&format!(
            " (not created yet: measured on {})",
            measured.display()
        ));
    }
    let status = Status::of_level(thresholds.level(free));
    Row::new(check, status, format!("{free:.1}% free"), detail)
}

/// Available memory against the aggregator's thresholds.
pub fn memory(settings: &Settings) -> Row {
    let thresholds = Thresholds::memory(&settings.aggregator);
    match system::available_memory_percent() {
        Ok(available) => Row::new(
            "memory",
            Status::of_level(thresholds.level(available)),
            format!("{available:.1}% available"),
            format!(
                "warn under {}%, fail under {}% available",
                thresholds.warn, thresholds.fail
            ),
        ),
        Err(error) => Row::unchecked("memory", error),
    }
}

/// The newest good backup's age against `ops.max_backup_age_hours`.
pub fn backup(settings: &Settings, now: DateTime<Utc>) -> Row {
    let dir = &settings.ops.backup.dir;
    let newest = catalog::newest_good(dir);
    grade_backup(
        dir,
        dir.exists(),
        newest.as_ref(),
        now,
        settings.ops.max_backup_age_hours,
    )
}

/// A backup directory that does not exist means no backup was ever taken
/// here: a warning (set them up). One that exists without a good backup in
/// it, or whose newest is too old, is a failure.
fn grade_backup(
    dir: &Path,
    exists: bool,
    newest: Option<&Backup>,
    now: DateTime<Utc>,
    max_hours: u64,
) -> Row {
    const CHECK: &str = "backup";
    let Some(backup) = newest else {
        return if exists {
            let detail = format!("no complete backup in {}", dir.display());
            Row::new(CHECK, Status::Fail, "none", detail)
        } else {
            let detail = format!(
                "{} does not exist: no backup was ever taken here (schedule `chatbot-ops backup`)",
                dir.display()
            );
            Row::new(CHECK, Status::Warn, "never", detail)
        };
    };
    let hours = (now - backup.started).num_minutes() as f64 / 60.0;
    let too_old = hours > max_hours as f64;
    let status = if too_old { Status::Fail } else { Status::Ok };
    let detail = format!("{} (ops.max_backup_age_hours: {max_hours})", backup.id);
    Row::new(CHECK, status, format!("{hours:.1} h old"), detail)
}

/// Each service's state: its systemd unit `chatbot-<service>` when systemd
/// runs this host, else its `/livez` (the aggregator's at `ops.health_url`).
pub async fn services(settings: &Settings) -> Vec<Row> {
    let mut names: Vec<String> = settings.aggregator.services.keys().cloned().collect();
    names.push(AGGREGATOR.to_owned());
    if Path::new(SYSTEMD).exists() {
        return systemd_units(&names);
    }
    let mut rows = Vec::new();
    for name in &names {
        let base = settings
            .aggregator
            .services
            .get(name)
            .unwrap_or(&settings.ops.health_url);
        rows.push(livez(name, base).await);
    }
    rows
}

/// `systemctl is-active chatbot-<name> …`, one row per unit.
fn systemd_units(names: &[String]) -> Vec<Row> {
    let units: Vec<String> = names.iter().map(|n| format!("chatbot-{n}")).collect();
    match std::process::Command::new("systemctl")
        .arg("is-active")
        .args(&units)
        .output()
    {
        Ok(output) => unit_rows(&units, &String::from_utf8_lossy(&output.stdout)),
        Err(error) => units
            .iter()
            .map(|unit| Row::unchecked(format!("service {unit}"), format!("systemctl: {error}")))
            .collect(),
    }
}

/// `systemctl is-active`'s answer (one state a line, in the units' order)
/// as rows: `active` is OK, `activating`/`reloading` a warning, anything
/// else (`failed`, `inactive`) a failure.
fn unit_rows(units: &[String], states: &str) -> Vec<Row> {
    let mut states = states.lines();
    units
        .iter()
        .map(|unit| {
            let state = states.next().unwrap_or("unknown").trim();
            let status = match state {
                "active" => Status::Ok,
                "activating" | "reloading" => Status::Warn,
                _ => Status::Fail,
            };
            Row::new(
                format!("service {unit}"),
                status,
                state,
                "systemctl is-active",
            )
        })
        .collect()
}

/// `GET {base}/livez`: 2xx is OK; another answer, or none, a failure.
async fn livez(name: &str, base: &str) -> Row {
    let url = format!("{}/livez", base.trim_end_matches('/'));
    let check = format!("service {name}");
    match http::get("the service", &url).await {
        Ok(response) if response.status().is_success() => {
            Row::new(check, Status::Ok, "up", format!("GET {url}"))
        }
        Ok(response) => {
            let detail = format!("GET {url} answered {}", response.status());
            Row::new(check, Status::Fail, "not live", detail)
        }
        Err(error) => Row::new(check, Status::Fail, "down", error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backup_at(started: DateTime<Utc>) -> Backup {
        Backup {
            id: catalog::id(started),
            started,
            dir: PathBuf::from("/b"),
        }
    }

    #[test]
    fn backups_grade_by_age_and_a_missing_directory_only_warns() {
        let now = Utc::now();
        let dir = Path::new("/var/backups/chatbot");
        let hours = |h| now - chrono::Duration::hours(h);
        let fresh = grade_backup(dir, true, Some(&backup_at(hours(3))), now, 26);
        assert_eq!(
            (fresh.status, fresh.value.as_str()),
            (Status::Ok, "3.0 h old")
        );
        let old = grade_backup(dir, true, Some(&backup_at(hours(27))), now, 26);
        assert_eq!(old.status, Status::Fail);
        let none = grade_backup(dir, true, None, now, 26);
        assert_eq!((none.status, none.value.as_str()), (Status::Fail, "none"));
        let never = grade_backup(dir, false, None, now, 26);
        assert_eq!(
            (never.status, never.value.as_str()),
            (Status::Warn, "never")
        );
    }

    #[test]
    fn unit_states_become_rows() {
        let units = ["chatbot-chat", "chatbot-session", "chatbot-gateway"].map(String::from);
        let rows = unit_rows(&units, "active\nfailed\n");
        let statuses: Vec<Status> = rows.iter().map(|r| r.status).collect();
        assert_eq!(statuses, [Status::Ok, Status::Fail, Status::Fail]);
        assert_eq!(rows[2].value, "unknown");
        assert_eq!(rows[1].check, "service chatbot-session");
    }

    #[test]
    fn disk_paths_are_the_data_log_and_backup_paths_once_each() {
        let mut settings = Settings::default();
        settings.aggregator.disk_paths = vec![PathBuf::from("/"), PathBuf::from("/var")];
        settings.log.dir = Some(PathBuf::from("/var"));
        let paths: Vec<String> = disk_paths(&settings)
            .iter()
            .map(|(p, s)| format!("{} {s}", p.display()))
            .collect();
        assert_eq!(
            paths,
            [
                "/ aggregator.disk_paths",
                "/var aggregator.disk_paths",
                "/var/backups/chatbot ops.backup.dir"
            ]
        );
    }

    #[test]
    fn a_path_not_created_yet_is_measured_on_its_parent() {
        let thresholds = Thresholds {
            warn: 0.0,
            fail: 0.0,
        };
        let row = disk(Path::new("/no/such/dir"), "log.dir", thresholds);
        assert_eq!(row.status, Status::Ok, "{row:?}");
        assert!(row.detail.contains("measured on /"), "{row:?}");
        let full = Thresholds {
            warn: 100.0,
            fail: 100.0,
        };
        assert_eq!(disk(Path::new("/"), "x", full).status, Status::Fail);
    }
}
