//! The Kubernetes manifests in `deploy/k8s/`, checked the way someone applying
//! them would meet them, without a cluster: every kustomization (the base,
//! each overlay, and the base with each optional component) renders with
//! `kubectl kustomize`; every rendered object validates strictly (unknown
//! fields rejected) against the Kubernetes 1.37 schemas of
//! `kubernetes-validate`, and against 1.30's, the oldest release the
//! manifests are meant for (the preStop `sleep` action is on by default from
//! 1.30); and `deploy/k8s/check.py` finds what the manifests
//! promise (probes, security context, resources, graceful shutdown, replicas,
//! autoscalers, disruption budgets, network policies, scraping, the pods'
//! configuration and secrets, no secret values). ServiceMonitors, a CRD that
//! `kubernetes-validate` has no schema for, are validated by `check.py`
//! against the upstream CRD's schema. The tools come from the test venv
//! (`scripts/setup.sh --test`); no service binary is needed.

use std::path::{Component, Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::{repo_root, venv_tool};

/// The Kubernetes versions whose schemas the manifests must satisfy: the
/// newest that kubernetes-validate knows and the oldest supported.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.37", "1.30"];

fn k8s_dir() -> PathBuf {
    repo_root().join("deploy/k8s")
}

/// Where this test writes its renders and generated kustomizations.
fn scratch() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("deploy-k8s");
    std::fs::create_dir_all(&dir).unwrap();
    dir.canonicalize().unwrap()
}

/// `to` relative to the directory `from` (kustomize refuses absolute paths).
fn relative(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<Component> = from.components().collect();
    let to: Vec<Component> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut path = PathBuf::new();
    for _ in common..from.len() {
        path.push("..");
    }
    for part in &to[common..] {
        path.push(part);
    }
    path
}

/// The subdirectories of `dir` that hold a kustomization.yaml.
fn kustomization_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.join("kustomization.yaml").exists())
        .collect();
    dirs.sort();
    dirs
}

/// Every kustomization a user can apply: (label, directory). A component
/// cannot be rendered alone, so each is rendered over the base through a
/// generated overlay, set up as README.md tells users to (its own
/// `namespace:`, since the base's does not reach what a component adds).
fn targets() -> Vec<(String, PathBuf)> {
    let k8s = k8s_dir().canonicalize().unwrap();
    let mut targets = vec![("base".to_owned(), k8s.join("base"))];
    let overlays = kustomization_dirs(&k8s.join("overlays"));
    assert!(!overlays.is_empty(), "deploy/k8s/overlays has no overlay");
    for overlay in overlays {
        let name = overlay.file_name().unwrap().to_string_lossy().into_owned();
        targets.push((format!("overlays/{name}"), overlay));
    }
    for component in kustomization_dirs(&k8s.join("components")) {
        let name = component
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let dir = scratch().join(format!("with-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        let overlay = format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\n\
             kind: Kustomization\n\
             namespace: chatbot\n\
             resources:\n  - {}\n\
             components:\n  - {}\n",
            relative(&dir, &k8s.join("base")).display(),
            relative(&dir, &component).display(),
        );
        std::fs::write(dir.join("kustomization.yaml"), overlay).unwrap();
        targets.push((format!("base + components/{name}"), dir));
    }
    targets
}

/// `kubectl kustomize DIR`, written to a file; panics with kubectl's error.
fn render(label: &str, dir: &Path) -> PathBuf {
    let output = Command::new(venv_tool("kubectl"))
        .arg("kustomize")
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{label}: kubectl kustomize failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let file = scratch().join(format!("{}.yaml", label.replace(['/', ' ', '+', ','], "_")));
    std::fs::write(&file, &output.stdout).unwrap();
    file
}

/// What `kubernetes-validate --strict` said about one render.
struct Validation {
    success: bool,
    /// Objects that passed, per version (in KUBERNETES_VERSIONS' order).
    passed: [usize; KUBERNETES_VERSIONS.len()],
    /// Objects it had no schema for, by kind (once per version).
    unknown_kinds: Vec<String>,
    output: String,
}

fn validate(file: &Path) -> Validation {
    let output = Command::new(venv_tool("kubernetes-validate"))
        .arg("--strict")
        .args(KUBERNETES_VERSIONS.iter().flat_map(|v| ["-k", v]))
        .arg(file)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let mut validation = Validation {
        success: output.status.success(),
        passed: [0; KUBERNETES_VERSIONS.len()],
        unknown_kinds: Vec::new(),
        output: text.clone(),
    };
    for line in text.lines() {
        let version = KUBERNETES_VERSIONS
            .iter()
            .position(|v| line.ends_with(&format!("against version {v}")));
        if let (true, Some(version)) = (line.starts_with("INFO "), version) {
            validation.passed[version] += 1;
        } else if let Some(rest) = line.strip_prefix("WARN ") {
            match rest.split_once("Couldn't find schema for kind ") {
                Some((_, kind)) => validation
                    .unknown_kinds
                    .push(kind.split(' ').next().unwrap_or_default().to_owned()),
                None => validation.success = false,
            }
        } else if !line.trim().is_empty() {
            validation.success = false;
        }
    }
    validation
}

/// `check.py` on a render: Ok(summary) or Err(its problems).
fn check(file: &Path) -> Result<Value, String> {
    let output = Command::new(venv_tool("python"))
        .arg(k8s_dir().join("check.py"))
        .arg(file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        return Err(format!(
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).map_err(|e| format!("no summary ({e}): {stdout}"))
}

fn kind_count(summary: &Value, kind: &str) -> u64 {
    summary["kinds"][kind].as_u64().unwrap_or(0)
}

#[test]
fn every_kustomization_renders_validates_strictly_and_keeps_its_promises() {
    let mut failures = Vec::new();
    let mut service_monitors = 0;
    let mut cron_jobs = 0;
    for (label, dir) in targets() {
        let file = render(&label, &dir);
        let validation = validate(&file);
        if !validation.success {
            failures.push(format!(
                "{label}: kubernetes-validate --strict (Kubernetes {}) failed:\n{}",
                KUBERNETES_VERSIONS.join(", "),
                validation.output
            ));
        }
        if let Some(kind) = validation
            .unknown_kinds
            .iter()
            .find(|kind| *kind != "ServiceMonitor")
        {
            failures.push(format!(
                "{label}: no schema for kind {kind}, so it went unchecked"
            ));
        }
        let summary = match check(&file) {
            Ok(summary) => summary,
            Err(problems) => {
                failures.push(format!("{label}: deploy/k8s/check.py:\n{problems}"));
                continue;
            }
        };
        // Every object was checked: by its schema, or (ServiceMonitors) by
        // check.py against the CRD's.
        let objects = summary["objects"].as_u64().unwrap() as usize;
        let monitors = kind_count(&summary, "ServiceMonitor") as usize;
        if validation
            .passed
            .iter()
            .any(|passed| passed + monitors != objects)
            || validation.unknown_kinds.len() != monitors * KUBERNETES_VERSIONS.len()
        {
            failures.push(format!(
                "{label}: {objects} objects, {:?} passed the schemas of {KUBERNETES_VERSIONS:?}, \
                 {monitors} ServiceMonitors:\n{}",
                validation.passed, validation.output
            ));
        }
        service_monitors += monitors;
        cron_jobs += kind_count(&summary, "CronJob");
        for kind in ["Deployment", "Service"] {
            if kind_count(&summary, kind) != 4 {
                failures.push(format!("{label}: expected 4 of {kind}: {summary}"));
            }
        }
        for service in ["gateway", "chat"] {
            if summary["replicas"][service].as_u64().unwrap_or(0) < 2 {
                failures.push(format!("{label}: {service} has fewer than 2 replicas"));
            }
        }
        eprintln!(
            "{label}: {objects} objects; valid (strict) against Kubernetes {}: {:?}; \
             ServiceMonitors valid against the CRD schema: {monitors}; check.py: {summary}",
            KUBERNETES_VERSIONS.join(" and "),
            validation.passed
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(
        service_monitors > 0,
        "no render has a ServiceMonitor: the servicemonitor component went unchecked"
    );
    assert!(
        cron_jobs > 0,
        "no render has a CronJob: the backup component went unchecked"
    );
}

/// check.py fails `text` (a broken copy of `original`) with `expected`.
fn assert_caught(what: &str, text: &str, original: &str, expected: &str) {
    assert_ne!(text, original, "{what}: the change did not apply");
    let file = scratch().join("broken.yaml");
    std::fs::write(&file, text).unwrap();
    match check(&file) {
        Ok(summary) => panic!("{what}: check.py passed it: {summary}"),
        Err(problems) => assert!(
            problems.contains(expected),
            "{what}: expected {expected:?} in:\n{problems}"
        ),
    }
}

/// The checks fail on the mistakes they exist for: each change to the base's
/// render below must be caught, naming what is wrong.
#[test]
fn the_checks_catch_broken_manifests() {
    let rendered = render("base, to break", &k8s_dir().join("base"));
    let base = std::fs::read_to_string(rendered).unwrap();
    let secret = "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: chatbot-secrets\n  \
                  namespace: chatbot\n  labels:\n    app.kubernetes.io/part-of: chatbot\n    \
                  app.kubernetes.io/managed-by: kustomize\ndata:\n  database-url: eA==\n";
    let cases: [(&str, String, &str); 9] = [
        (
            "writable root filesystem",
            base.replacen(
                "readOnlyRootFilesystem: true",
                "readOnlyRootFilesystem: false",
                1,
            ),
            "readOnlyRootFilesystem must be true",
        ),
        (
            "readiness on /livez",
            base.replacen("path: /readyz", "path: /livez", 1),
            "readinessProbe must GET /readyz",
        ),
        (
            "chat behind a ClusterIP",
            base.replacen("clusterIP: None", "type: ClusterIP", 1),
            "must be headless",
        ),
        (
            "grace period too short",
            base.replacen(
                "terminationGracePeriodSeconds: 105",
                "terminationGracePeriodSeconds: 95",
                1,
            ),
            "terminationGracePeriodSeconds 95 must exceed",
        ),
        (
            "a misspelt configuration key",
            base.replacen("migrate_on_start = false", "migrate_on_start_ = false", 1),
            "unknown configuration key database.migrate_on_start_",
        ),
        (
            "a secret value",
            format!("{base}{secret}"),
            "Secret/chatbot-secrets: a Secret in the manifests",
        ),
        (
            "an open network policy",
            base.replace(
                "    - namespaceSelector:\n        matchLabels:\n          kubernetes.io/metadata.name: monitoring\n",
                "    - namespaceSelector: {}\n",
            ),
            "admits every namespace",
        ),
        (
            "the gateway pointed at the wrong port of chat",
            base.replacen(
                "chat_url = \"http://chat:3002\"",
                "chat_url = \"http://chat:3003\"",
                1,
            ),
            "Service/chat has no port 3003",
        ),
        (
            "no CPU request",
            base.replacen("            cpu: 200m\n", "", 1),
            "resources.requests.cpu is not set",
        ),
    ];
    for (what, text, expected) in cases {
        assert_caught(what, &text, &base, expected);
    }

    // The backup CronJob: one run at a time, and a bucket to write to.
    let (label, dir) = targets()
        .into_iter()
        .find(|(label, _)| label == "base + components/backup")
        .unwrap();
    let with_backup = std::fs::read_to_string(render(&label, &dir)).unwrap();
    for (what, text, expected) in [
        (
            "overlapping backups",
            with_backup.replacen("concurrencyPolicy: Forbid", "concurrencyPolicy: Allow", 1),
            "concurrencyPolicy must be Forbid",
        ),
        (
            "no bucket",
            with_backup.replacen("value: chatbot-backups", "value: \"\"", 1),
            "no bucket",
        ),
        (
            "the backup on the read-only root",
            with_backup.replacen("value: /var/backups/chatbot", "value: /srv/backups", 1),
            "CHATBOT__OPS__BACKUP__DIR /srv/backups is not a mounted volume",
        ),
    ] {
        assert_caught(what, &text, &with_backup, expected);
    }

    // kubernetes-validate is strict: an unknown field fails.
    let file = scratch().join("unknown-field.yaml");
    std::fs::write(
        &file,
        base.replacen(
            "      maxSurge: 1\n",
            "      maxSurge: 1\n      maxSurges: 2\n",
            1,
        ),
    )
    .unwrap();
    let validation = validate(&file);
    assert!(
        !validation.success && validation.output.contains("'maxSurges' was unexpected"),
        "an unknown field passed:\n{}",
        validation.output
    );
}
