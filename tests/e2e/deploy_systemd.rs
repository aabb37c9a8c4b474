//! The systemd deployment in `deploy/systemd/`, checked with systemd's own
//! tools (the Debian package `systemd` provides `systemd-analyze`,
//! `systemctl` and `systemd-sysusers`; systemd need not be running).
//!
//! `install.sh --destdir` stages an installation into a temporary root with
//! stand-in binaries (small executable scripts): the real `/etc`, `/opt` and
//! the running system are not touched. The staged tree must be the expected
//! one, the same after a second run, and keep what an operator wrote. Then,
//! in that root completed with the host's own OS units and `/bin/true`,
//! `systemd-analyze verify --root` loads every installed unit (with its
//! drop-ins, slice and dependencies, and checks that each `ExecStart=`
//! binary exists and is executable) and must print nothing;
//! `systemd-analyze security --offline=yes` scores every service unit under a
//! threshold. The units' text must carry the hardening, the credentials and
//! a stop timeout longer than twice the shutdown grace.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::repo_root;

/// The four services: binary `NAME`, unit `chatbot-NAME.service`.
const SERVICES: [&str; 4] = ["gateway", "chat", "session", "health-aggregator"];

/// Every binary install.sh installs: the services and the operations tool.
const BINARIES: [&str; 5] = [
    "gateway",
    "chat",
    "session",
    "health-aggregator",
    "chatbot-ops",
];

/// The scheduled jobs: `chatbot-NAME.timer` runs `chatbot-NAME.service`,
/// which runs `chatbot-ops NAME`.
const JOBS: [&str; 2] = ["backup", "daily-check"];

/// Every unit file install.sh installs.
const UNITS: [&str; 11] = [
    "chatbot-service.service",
    "chatbot-gateway.service",
    "chatbot-chat.service",
    "chatbot-session.service",
    "chatbot-health-aggregator.service",
    "chatbot-migrate.service",
    "chatbot.slice",
    "chatbot-backup.service",
    "chatbot-backup.timer",
    "chatbot-daily-check.service",
    "chatbot-daily-check.timer",
];

/// Highest accepted `systemd-analyze security` exposure of a unit that runs
/// one of the binaries (systemd 252 scores them 1.1 "OK": what is left is
/// network access, the host's root directory, /proc/stat and /proc/meminfo,
/// the RTC read that ProtectClock= allows and no IP allow list).
const MAX_SERVICE_EXPOSURE: f64 = 1.1;

/// The same for the grouping unit, which runs only /bin/true (0.2 "SAFE").
const MAX_GROUP_EXPOSURE: f64 = 0.2;

/// The services' default `shutdown_grace_secs` when config/default.toml does
/// not set one.
const DEFAULT_GRACE_SECS: u64 = 30;

fn deploy_dir() -> PathBuf {
    repo_root().join("deploy/systemd")
}

/// Runs `command`, panicking with a hint when the program is missing.
fn run(command: &mut Command) -> Output {
    let program = command.get_program().to_string_lossy().into_owned();
    command.output().unwrap_or_else(|e| {
        panic!("cannot run {program} (install the Debian package systemd; see deploy/systemd/README.md): {e}")
    })
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("chatbot-systemd-{tag}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

/// A directory with stand-in binaries of the services and chatbot-ops.
fn fake_binaries() -> TempDir {
    let dir = TempDir::new("bin");
    for name in BINARIES {
        let path = dir.0.join(name);
        std::fs::write(&path, format!("#!/bin/sh\necho 'stand-in {name}'\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir
}

/// Runs install.sh with `args` (and the environment `envs`, DESTDIR
/// removed unless given there); panics unless it succeeds.
fn install(args: &[&str], envs: &[(&str, &Path)]) -> String {
    let mut command = Command::new("bash");
    command
        .arg(deploy_dir().join("install.sh"))
        .args(args)
        .env_remove("DESTDIR");
    for (key, value) in envs {
        command.env(key, value);
    }
    let output = run(&mut command);
    let out = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert!(
        output.status.success(),
        "install.sh {args:?} failed:\n{out}"
    );
    out
}

/// Every entry under `root`: relative path → kind, mode and content (or
/// link target).
fn tree(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, into: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let mode = meta.permissions().mode() & 0o7777;
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                into.insert(rel, format!("link -> {}", target.display()));
            } else if meta.is_dir() {
                into.insert(rel, format!("dir {mode:04o}"));
                walk(root, &path, into);
            } else {
                let content = text(&std::fs::read(&path).unwrap());
                into.insert(rel, format!("file {mode:04o}\n{content}"));
            }
        }
    }
    let mut entries = BTreeMap::new();
    walk(root, root, &mut entries);
    entries
}

/// The mode of an entry of [`tree`] (`"file 0640"` → 0o640).
fn mode_of(entries: &BTreeMap<String, String>, path: &str) -> String {
    let entry = entries
        .get(path)
        .unwrap_or_else(|| panic!("{path} is not installed"));
    entry.lines().next().unwrap().to_owned()
}

/// Completes a staged root so that systemd can load units in it: the host's
/// OS units (targets, network-online.target, …) and /bin/true.
fn add_host_os(root: &Path) {
    let os_units = ["/usr/lib/systemd/system", "/lib/systemd/system"]
        .into_iter()
        .map(Path::new)
        .find(|dir| dir.join("sysinit.target").exists())
        .expect("the host has no systemd units (install the Debian package systemd)");
    std::fs::create_dir_all(root.join("usr/lib/systemd")).unwrap();
    let copy = run(Command::new("cp")
        .arg("-a")
        .arg(os_units)
        .arg(root.join("usr/lib/systemd/system")));
    assert!(copy.status.success(), "{}", text(&copy.stderr));
    std::fs::create_dir_all(root.join("usr/bin")).unwrap();
    let true_bin = ["/usr/bin/true", "/bin/true"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap();
    std::fs::copy(true_bin, root.join("usr/bin/true")).unwrap();
    if !root.join("bin").exists() {
        std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
    }
}

/// `systemd-analyze verify --root` on every installed unit: it must succeed
/// and print nothing (warnings such as an unknown key exit 0).
fn verify_all(root: &Path) {
    let unit_dir = root.join("etc/systemd/system");
    let output = run(Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .args(UNITS.iter().map(|unit| unit_dir.join(unit))));
    let said = text(&output.stdout) + &text(&output.stderr);
    eprintln!(
        "systemd-analyze verify --root={} {UNITS:?}: {}, output: {said:?}",
        root.display(),
        output.status,
    );
    assert!(
        output.status.success() && said.trim().is_empty(),
        "systemd-analyze verify found problems ({}):\n{said}",
        output.status
    );
}

/// The units installed by install.sh are the repository's, with the prefix
/// of `ExecStart=` and `Documentation=` moved from /opt/chatbot.
fn assert_units_installed(root: &Path, prefix: &str) {
    for unit in UNITS {
        let shipped = std::fs::read_to_string(deploy_dir().join(unit)).unwrap();
        let installed =
            std::fs::read_to_string(root.join("etc/systemd/system").join(unit)).unwrap();
        assert_eq!(
            installed,
            shipped.replace("/opt/chatbot/", &format!("{prefix}/")),
            "{unit}"
        );
    }
}

/// Paths install.sh writes to on a real installation that must still be as
/// they were (absent stays absent).
fn real_paths() -> Vec<(PathBuf, bool)> {
    [
        "/etc/chatbot",
        "/etc/systemd/system/chatbot-service.service",
        "/etc/systemd/system/multi-user.target.wants/chatbot-service.service",
        "/etc/sysusers.d/chatbot.conf",
        "/opt/chatbot",
        "/srv/chatbot",
    ]
    .into_iter()
    .map(|p| (PathBuf::from(p), Path::new(p).exists()))
    .collect()
}

#[test]
fn install_script_stages_the_expected_tree_and_is_idempotent() {
    let script = deploy_dir().join("install.sh");
    let syntax = run(Command::new("bash").arg("-n").arg(&script));
    assert!(syntax.status.success(), "bash -n: {}", text(&syntax.stderr));
    match Command::new("shellcheck").arg(&script).output() {
        Ok(output) => assert!(
            output.status.success(),
            "shellcheck install.sh:\n{}",
            text(&output.stdout)
        ),
        Err(_) => eprintln!("shellcheck is not installed: skipped"),
    }

    let before = real_paths();
    let bin = fake_binaries();
    let root = TempDir::new("root");
    let from = bin.0.display().to_string();
    let destdir = root.0.display().to_string();
    let out = install(&["--from", &from, "--destdir", &destdir], &[]);
    eprintln!("install.sh:\n{out}");
    assert!(out.contains("nothing was started"), "{out}");
    let first = tree(&root.0);

    // The expected tree, and nothing else.
    let mut expected: Vec<String> = [
        "etc",
        "etc/chatbot",
        "etc/chatbot/default.toml",
        "etc/chatbot/production.toml",
        "etc/chatbot/credentials",
        "etc/chatbot/credentials/database-url",
        "etc/chatbot/credentials/redis-url",
        "etc/sysusers.d",
        "etc/sysusers.d/chatbot.conf",
        "etc/systemd",
        "etc/systemd/system",
        "etc/systemd/system/multi-user.target.wants",
        "etc/systemd/system/multi-user.target.wants/chatbot-service.service",
        "etc/systemd/system/chatbot-service.service.wants",
        "opt",
        "opt/chatbot",
        "opt/chatbot/bin",
        "opt/chatbot/share",
        "opt/chatbot/share/doc",
        "opt/chatbot/share/doc/chatbot",
        "opt/chatbot/share/doc/chatbot/systemd.md",
        "etc/systemd/system/timers.target.wants",
        "var",
        "var/backups",
        "var/backups/chatbot",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    for unit in UNITS {
        expected.push(format!("etc/systemd/system/{unit}"));
    }
    for binary in BINARIES {
        expected.push(format!("opt/chatbot/bin/{binary}"));
    }
    for service in SERVICES {
        expected.push(format!(
            "etc/systemd/system/chatbot-service.service.wants/chatbot-{service}.service"
        ));
    }
    for job in JOBS {
        expected.push(format!(
            "etc/systemd/system/timers.target.wants/chatbot-{job}.timer"
        ));
    }
    expected.sort();
    let found: Vec<String> = first.keys().cloned().collect();
    assert_eq!(found, expected, "the staged tree");

    for (path, mode) in [
        ("etc/chatbot", "dir 0750"),
        ("etc/chatbot/default.toml", "file 0640"),
        ("etc/chatbot/production.toml", "file 0640"),
        ("etc/chatbot/credentials", "dir 0700"),
        ("etc/chatbot/credentials/database-url", "file 0600"),
        ("etc/chatbot/credentials/redis-url", "file 0600"),
        ("opt/chatbot/bin/chat", "file 0755"),
        ("etc/systemd/system/chatbot-chat.service", "file 0644"),
        ("opt/chatbot/bin/chatbot-ops", "file 0755"),
        ("var/backups/chatbot", "dir 0750"),
    ] {
        assert_eq!(mode_of(&first, path), mode, "{path}");
    }
    assert_eq!(
        std::fs::read_to_string(root.0.join("etc/chatbot/default.toml")).unwrap(),
        std::fs::read_to_string(repo_root().join("config/default.toml")).unwrap()
    );
    for name in ["database-url", "redis-url"] {
        let len = std::fs::metadata(root.0.join("etc/chatbot/credentials").join(name))
            .unwrap()
            .len();
        assert_eq!(len, 0, "the {name} placeholder is empty");
    }
    assert_eq!(
        first["etc/systemd/system/chatbot-service.service.wants/chatbot-chat.service"],
        "link -> /etc/systemd/system/chatbot-chat.service"
    );
    assert_eq!(
        first["etc/systemd/system/timers.target.wants/chatbot-backup.timer"],
        "link -> /etc/systemd/system/chatbot-backup.timer"
    );
    assert_units_installed(&root.0, "/opt/chatbot");

    // The sysusers.d entry creates the user (dry run, in the staged root).
    let sysusers = run(Command::new("systemd-sysusers")
        .arg(format!("--root={destdir}"))
        .arg("--dry-run"));
    let said = format!("{}{}", text(&sysusers.stdout), text(&sysusers.stderr));
    assert!(
        sysusers.status.success() && said.contains("Creating user 'chatbot'"),
        "systemd-sysusers: {said}"
    );

    // What the operator writes survives a second run (DESTDIR this time),
    // which changes nothing else.
    let url = "postgres://chatbot:secret@db.internal:5432/chatbot\n";
    std::fs::write(root.0.join("etc/chatbot/credentials/database-url"), url).unwrap();
    std::fs::write(
        root.0.join("etc/chatbot/production.toml"),
        "[chat]\nmodel = \"x\"\n",
    )
    .unwrap();
    let edited = tree(&root.0);
    let out = install(&["--from", &from], &[("DESTDIR", &root.0)]);
    assert!(
        !out.contains("created"),
        "a second run creates nothing:\n{out}"
    );
    assert_eq!(tree(&root.0), edited, "a second run changes nothing");

    // --with-n8n adds the drop-in and its placeholder, and only those.
    install(&["--from", &from, "--destdir", &destdir, "--with-n8n"], &[]);
    let with_n8n = tree(&root.0);
    let added: Vec<&String> = with_n8n
        .keys()
        .filter(|k| !edited.contains_key(*k))
        .collect();
    assert_eq!(
        added,
        [
            "etc/chatbot/credentials/n8n-webhook-url",
            "etc/systemd/system/chatbot-chat.service.d",
            "etc/systemd/system/chatbot-chat.service.d/n8n-webhook.conf",
        ],
        "what --with-n8n adds"
    );
    assert_eq!(
        mode_of(&with_n8n, "etc/chatbot/credentials/n8n-webhook-url"),
        "file 0600"
    );

    // Missing binaries are refused, naming the build command.
    let empty = TempDir::new("nobin");
    let refused = run(Command::new("bash")
        .arg(&script)
        .args([
            "--from",
            &empty.0.display().to_string(),
            "--destdir",
            &destdir,
        ])
        .env_remove("DESTDIR"));
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("cargo build --release"),
        "{}",
        text(&refused.stderr)
    );

    let after = real_paths();
    assert_eq!(before, after, "the real system was not touched");
}

#[test]
fn every_unit_passes_systemd_analyze_verify() {
    let bin = fake_binaries();
    let from = bin.0.display().to_string();
    // The default layout, with the optional n8n drop-in so it is loaded too.
    let root = TempDir::new("verify");
    install(
        &[
            "--from",
            &from,
            "--destdir",
            &root.0.display().to_string(),
            "--with-n8n",
        ],
        &[],
    );
    add_host_os(&root.0);
    verify_all(&root.0);

    // Another prefix: ExecStart= follows it, and the binaries are found there.
    let other = TempDir::new("verify-prefix");
    install(
        &[
            "--from",
            &from,
            "--destdir",
            &other.0.display().to_string(),
            "--prefix",
            "/srv/chatbot",
        ],
        &[],
    );
    assert_units_installed(&other.0, "/srv/chatbot");
    add_host_os(&other.0);
    verify_all(&other.0);

    // verify does notice a missing binary (so the silence above means
    // something).
    std::fs::remove_file(other.0.join("srv/chatbot/bin/session")).unwrap();
    let output = run(Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", other.0.display()))
        .arg(other.0.join("etc/systemd/system/chatbot-session.service")));
    let said = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert!(
        !output.status.success() && said.contains("/srv/chatbot/bin/session"),
        "verify should report the missing binary: {said}"
    );
}

#[test]
fn security_exposure_is_low() {
    let bin = fake_binaries();
    let root = TempDir::new("security");
    install(
        &[
            "--from",
            &bin.0.display().to_string(),
            "--destdir",
            &root.0.display().to_string(),
            "--with-n8n",
        ],
        &[],
    );
    let services: Vec<&str> = UNITS
        .into_iter()
        .filter(|u| u.ends_with(".service"))
        .collect();
    let output = run(Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(format!("--root={}", root.0.display()))
        .args(&services));
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "systemd-analyze security: {}\n{stdout}",
        text(&output.stderr)
    );
    let mut scores = BTreeMap::new();
    for line in stdout.lines() {
        if let Some(rest) = line.split("Overall exposure level for ").nth(1) {
            let (unit, verdict) = rest.split_once(": ").unwrap();
            let mut words = verdict.split_whitespace();
            let score: f64 = words.next().unwrap().parse().unwrap();
            let word = words.next().unwrap().to_owned();
            scores.insert(unit.to_owned(), (score, word));
        }
    }
    eprintln!("systemd-analyze security --offline=yes (exposure, 0 = best, 10 = worst):");
    for (unit, (score, word)) in &scores {
        eprintln!("  {unit:<36} {score:.1} {word}");
    }
    for unit in services {
        let (score, word) = scores
            .get(unit)
            .unwrap_or_else(|| panic!("no score for {unit}:\n{stdout}"));
        let max = if unit == "chatbot-service.service" {
            MAX_GROUP_EXPOSURE
        } else {
            MAX_SERVICE_EXPOSURE
        };
        assert!(
            *score <= max + 1e-9 && (word == "OK" || word == "SAFE"),
            "{unit}: exposure {score} {word}, at most {max} expected"
        );
    }
}

/// A unit file as (section, key, value) entries, in order.
struct Unit {
    name: String,
    entries: Vec<(String, String, String)>,
}

impl Unit {
    fn load(name: &str) -> Self {
        let body = std::fs::read_to_string(deploy_dir().join(name)).unwrap();
        let mut section = String::new();
        let mut entries = Vec::new();
        for line in body.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.to_owned();
                continue;
            }
            let (key, value) = line.split_once('=').expect("key=value");
            entries.push((
                section.clone(),
                key.trim().to_owned(),
                value.trim().to_owned(),
            ));
        }
        Self {
            name: name.to_owned(),
            entries,
        }
    }

    /// Every value of `key` in `section`.
    fn all(&self, section: &str, key: &str) -> Vec<&str> {
        self.entries
            .iter()
            .filter(|(s, k, _)| s == section && k == key)
            .map(|(_, _, v)| v.as_str())
            .collect()
    }

    /// The values of a list-valued key, all its lines together.
    fn words(&self, section: &str, key: &str) -> Vec<&str> {
        self.all(section, key)
            .into_iter()
            .flat_map(str::split_whitespace)
            .collect()
    }

    /// The single value of `key` in `section`.
    fn one(&self, section: &str, key: &str) -> &str {
        match self.all(section, key).as_slice() {
            [value] => value,
            other => panic!(
                "{}: [{section}] {key} = {other:?}, one value expected",
                self.name
            ),
        }
    }
}

/// A systemd time span such as `75s`, `2min`, `1min 30s` or `90`, in seconds.
fn seconds(span: &str) -> u64 {
    span.split_whitespace()
        .map(|part| {
            let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
            let number: u64 = digits.parse().unwrap();
            match &part[digits.len()..] {
                "" | "s" | "sec" => number,
                "m" | "min" => number * 60,
                "h" => number * 3600,
                unit => panic!("unexpected time unit {unit} in {span}"),
            }
        })
        .sum()
}

/// The longest `shutdown_grace_secs` in config/default.toml, or the default.
fn shutdown_grace_secs() -> u64 {
    let config = std::fs::read_to_string(repo_root().join("config/default.toml")).unwrap();
    config
        .lines()
        .filter_map(|line| line.split('#').next().unwrap().split_once('='))
        .filter(|(key, _)| key.trim() == "shutdown_grace_secs")
        .map(|(_, value)| value.trim().parse::<u64>().unwrap())
        .max()
        .unwrap_or(DEFAULT_GRACE_SECS)
}

/// The `CHATBOT__…_FILE` variable that reads the credential `id`.
fn file_variable(id: &str) -> &'static str {
    match id {
        "database-url" => "CHATBOT__DATABASE__URL_FILE",
        "redis-url" => "CHATBOT__REDIS__URL_FILE",
        "n8n-webhook-url" => "CHATBOT__N8N__WEBHOOK_URL_FILE",
        other => panic!("unexpected credential {other}"),
    }
}

#[test]
fn units_carry_hardening_credentials_and_stop_timeout() {
    let hardening = [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("PrivateUsers", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("ProtectClock", "yes"),
        ("ProtectHostname", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("RestrictNamespaces", "yes"),
        ("RestrictRealtime", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("SystemCallArchitectures", "native"),
        ("CapabilityBoundingSet", ""),
        ("AmbientCapabilities", ""),
        ("User", "chatbot"),
        ("Group", "chatbot"),
        ("Slice", "chatbot.slice"),
        ("Environment", "CHATBOT_CONFIG_DIR=/etc/chatbot"),
        ("Environment", "CHATBOT_ENV=production"),
    ];
    let grace = shutdown_grace_secs();
    let mut runners: Vec<(String, String)> = SERVICES
        .iter()
        .map(|s| {
            (
                format!("chatbot-{s}.service"),
                format!("/opt/chatbot/bin/{s}"),
            )
        })
        .collect();
    runners.push((
        "chatbot-migrate.service".to_owned(),
        "/opt/chatbot/bin/chat migrate".to_owned(),
    ));
    for job in JOBS {
        runners.push((
            format!("chatbot-{job}.service"),
            format!("/opt/chatbot/bin/chatbot-ops {job}"),
        ));
    }
    for (name, exec) in &runners {
        let unit = Unit::load(name);
        assert_eq!(unit.one("Service", "ExecStart"), exec, "{name}");
        for (key, value) in hardening {
            assert!(
                unit.all("Service", key).contains(&value),
                "{name}: {key}={value} is missing"
            );
        }
        let filters = unit.all("Service", "SystemCallFilter");
        assert_eq!(filters.first(), Some(&"@system-service"), "{name}");
        assert!(filters.contains(&"~@privileged @resources"), "{name}");
        // No dependency can fail the unit: Wants=, never Requires=/BindsTo=.
        for key in ["Requires", "BindsTo", "Requisite"] {
            assert!(unit.all("Unit", key).is_empty(), "{name}: {key}=");
        }
        let after = unit.words("Unit", "After");
        assert!(after.contains(&"network-online.target"), "{name}: After=");
        assert!(
            unit.words("Unit", "Wants")
                .contains(&"network-online.target"),
            "{name}: Wants="
        );
        // Writable: the log directory (the backups for the backup job) and
        // nothing else.
        let writable: &[&str] = match name.as_str() {
            "chatbot-backup.service" => &["/var/backups/chatbot"],
            _ => &[],
        };
        assert_eq!(
            unit.all("Service", "ReadWritePaths"),
            writable,
            "{name}: ReadWritePaths="
        );
        // chat's outbox (exchanges the database could not take yet) is its
        // state: /var/lib/chatbot.
        let state: &[&str] = match name.as_str() {
            "chatbot-chat.service" => &["chatbot"],
            _ => &[],
        };
        assert_eq!(
            unit.all("Service", "StateDirectory"),
            state,
            "{name}: StateDirectory="
        );

        // Secrets only as credentials: each LoadCredential= is read through
        // its CHATBOT__…_FILE variable, and no URL is in the environment.
        let environment = unit.all("Service", "Environment");
        for credential in unit.all("Service", "LoadCredential") {
            let (id, path) = credential.split_once(':').unwrap();
            assert_eq!(path, format!("/etc/chatbot/credentials/{id}"), "{name}");
            let variable = format!("{}=%d/{id}", file_variable(id));
            assert!(
                environment.contains(&variable.as_str()),
                "{name}: {variable}"
            );
        }
        for variable in &environment {
            assert!(
                !variable.contains("://"),
                "{name}: a URL in Environment={variable}"
            );
        }
        let credentials: Vec<&str> = unit
            .all("Service", "LoadCredential")
            .into_iter()
            .map(|c| c.split_once(':').unwrap().0)
            .collect();
        let needed: &[&str] = match name.as_str() {
            "chatbot-gateway.service" => &[],
            "chatbot-session.service" => &["redis-url"],
            "chatbot-migrate.service" | "chatbot-backup.service" => &["database-url"],
            "chatbot-daily-check.service" => &[],
            _ => &["database-url", "redis-url"],
        };
        assert_eq!(credentials, needed, "{name}: credentials");
    }

    for service in SERVICES {
        let name = format!("chatbot-{service}.service");
        let unit = Unit::load(&name);
        assert_eq!(unit.one("Service", "Type"), "exec", "{name}");
        assert_eq!(unit.one("Service", "Restart"), "on-failure", "{name}");
        assert_eq!(
            unit.one("Service", "RestartPreventExitStatus"),
            "64",
            "{name}"
        );
        assert_eq!(unit.one("Service", "KillSignal"), "SIGTERM", "{name}");
        let stop = seconds(unit.one("Service", "TimeoutStopSec"));
        assert!(
            stop > 2 * grace,
            "{name}: TimeoutStopSec={stop}s is not more than twice shutdown_grace_secs ({grace}s)"
        );
        assert_eq!(unit.one("Service", "LogsDirectory"), "chatbot", "{name}");
        assert_eq!(unit.one("Service", "UMask"), "0027", "{name}");
        assert!(
            unit.all("Service", "Environment")
                .contains(&"CHATBOT__LOG__DIR=/var/log/chatbot"),
            "{name}: CHATBOT__LOG__DIR"
        );
        assert_eq!(
            unit.one("Service", "SyslogIdentifier"),
            format!("chatbot-{service}")
        );
        assert_eq!(
            unit.one("Unit", "PartOf"),
            "chatbot-service.service",
            "{name}"
        );
        assert_eq!(
            unit.one("Install", "WantedBy"),
            "chatbot-service.service",
            "{name}"
        );
    }
    let migrate = Unit::load("chatbot-migrate.service");
    assert_eq!(migrate.one("Service", "Type"), "oneshot");
    assert!(
        migrate.all("Install", "WantedBy").is_empty(),
        "migrations run on demand"
    );
    assert!(migrate.all("Unit", "PartOf").is_empty());

    // The optional n8n drop-in hands chat the webhook URL the same way.
    let n8n = Unit::load("chatbot-chat.service.d/n8n-webhook.conf");
    let id = "n8n-webhook-url";
    assert_eq!(
        n8n.one("Service", "LoadCredential"),
        format!("{id}:/etc/chatbot/credentials/{id}")
    );
    assert_eq!(
        n8n.one("Service", "Environment"),
        format!("{}=%d/{id}", file_variable(id))
    );

    // The grouping unit: `systemctl status chatbot-service` resolves to it.
    let group = Unit::load("chatbot-service.service");
    assert_eq!(group.one("Service", "Type"), "oneshot");
    assert_eq!(group.one("Service", "RemainAfterExit"), "yes");
    assert_eq!(group.one("Install", "WantedBy"), "multi-user.target");
    let members: Vec<String> = SERVICES
        .iter()
        .map(|s| format!("chatbot-{s}.service"))
        .collect();
    assert_eq!(group.words("Install", "Also"), members);
    assert_eq!(group.words("Unit", "After"), members);
    assert!(group.all("Unit", "Requires").is_empty() && group.all("Unit", "BindsTo").is_empty());
}

#[test]
fn timers_run_the_backup_and_the_daily_check_every_day() {
    for job in JOBS {
        let name = format!("chatbot-{job}.timer");
        let timer = Unit::load(&name);
        assert_eq!(timer.one("Install", "WantedBy"), "timers.target", "{name}");
        assert_eq!(timer.one("Timer", "Persistent"), "true", "{name}");
        // No Unit=: the timer starts the service of the same name.
        assert!(timer.all("Timer", "Unit").is_empty(), "{name}");
        let calendar = timer.one("Timer", "OnCalendar");
        let output = run(Command::new("systemd-analyze")
            .args(["calendar", "--iterations=2", calendar])
            .env("TZ", "UTC"));
        let said = text(&output.stdout);
        assert!(output.status.success(), "{name}: {said}");
        // "Next elapse: Wed 2026-12-02 02:00:00 UTC", "Iter. #2: Thu …".
        let next: Vec<chrono::NaiveDateTime> = said
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("Next elapse:") || l.starts_with("Iter. #"))
            .filter_map(|l| l.split_once(": "))
            .map(|(_, t)| {
                chrono::NaiveDateTime::parse_from_str(t.trim(), "%a %Y-%m-%d %H:%M:%S UTC").unwrap()
            })
            .collect();
        assert_eq!(next.len(), 2, "{name}: {said}");
        assert_eq!(
            next[1] - next[0],
            chrono::Duration::days(1),
            "{name}: daily"
        );

        let service = Unit::load(&format!("chatbot-{job}.service"));
        assert_eq!(service.one("Service", "Type"), "oneshot", "{name}");
        assert!(service.all("Install", "WantedBy").is_empty(), "{name}");
        assert!(service.all("Unit", "PartOf").is_empty(), "{name}");
    }
    // The nightly backup comes before the morning check that reads its age.
    let at = |job: &str| {
        let timer = Unit::load(&format!("chatbot-{job}.timer"));
        timer.one("Timer", "OnCalendar").to_owned()
    };
    assert!(at("backup") < at("daily-check"));

    // The backup: the bucket's keys from an optional file read by systemd,
    // and the credentials left out of the configuration archive.
    let backup = Unit::load("chatbot-backup.service");
    assert_eq!(
        backup.one("Service", "EnvironmentFile"),
        "-/etc/chatbot/credentials/s3.env"
    );
    assert_eq!(
        backup.one("Service", "TemporaryFileSystem"),
        "/etc/chatbot/credentials:ro"
    );
    for variable in [
        "CHATBOT__OPS__BACKUP__DIR=/var/backups/chatbot",
        "CHATBOT__OPS__BACKUP__CONFIG_DIR=/etc/chatbot",
        "CHATBOT__LOG__DIR=/var/log/chatbot",
    ] {
        assert!(
            backup.all("Service", "Environment").contains(&variable),
            "{variable}"
        );
    }
}
