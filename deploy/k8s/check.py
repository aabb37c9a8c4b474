#!/usr/bin/env python3
"""Checks a rendered kustomization (`kubectl kustomize DIR > out.yaml`) for
what deploy/k8s promises, beyond schema validity (kubernetes-validate checks
that): probes, security context, resources, graceful shutdown, replicas,
autoscalers, disruption budgets, network policies, Prometheus scraping, the
configuration the pods load, the secrets they mount, and no secret values.
ServiceMonitors (a CRD that kubernetes-validate has no schema for) are
validated here against schemas/servicemonitor-monitoring.coreos.com-v1.json,
rejecting unknown fields.

    .venv/bin/python deploy/k8s/check.py out.yaml

Prints one line per problem and exits 1 if there is any; otherwise prints a
JSON summary on its last line and exits 0. Needs PyYAML and jsonschema (both
installed with kubernetes-validate, scripts/test-requirements.txt).
"""

import json
import sys
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import yaml

HERE = Path(__file__).resolve().parent
DEFAULT_TOML = HERE.parent.parent / "config" / "default.toml"
SERVICEMONITOR_SCHEMA = HERE / "schemas" / "servicemonitor-monitoring.coreos.com-v1.json"
SECRET_EXAMPLE = HERE / "secret.example.env"
SECRET_NAME = "chatbot-secrets"
# The keys of the Secret chatbot-secrets that README.md and
# secret.example.env document; pods may mount only these.
SECRET_KEYS = {
    "database-url", "redis-url", "internal-token", "n8n-webhook-url", "s3-access-key-id",
    "s3-secret-access-key",
}
# CronJob name -> the chatbot-ops command it runs.
CRONJOBS = {"backup": ["/usr/local/bin/chatbot-ops", "backup"]}

# Deployment name -> (section of the configuration, binary).
SERVICES = {
    "gateway": ("gateway", "gateway"),
    "chat": ("chat", "chat"),
    "session": ("session", "session"),
    "health-aggregator": ("aggregator", "health-aggregator"),
}
# Services on the per-message path: replicated and autoscaled.
SCALED = ("gateway", "chat")
# Services with a PodDisruptionBudget.
BUDGETED = ("gateway", "chat", "session")
# Services the gateway balances over by DNS: headless.
HEADLESS = ("chat", "session")
# Who calls whom inside the namespace (Prometheus comes from its own). The
# gateway is public: any source, or if restricted, at least these.
CALLERS = {
    "gateway": {"health-aggregator"},
    "chat": {"gateway", "health-aggregator"},
    "session": {"gateway", "health-aggregator"},
    "health-aggregator": {"gateway"},
}
# ServerSettings fields that default.toml leaves to their serde defaults.
EXTRA_SERVER_KEYS = {"shutdown_grace_secs"}
DEFAULT_GRACE_SECS = 30
CLUSTER_SCOPED = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}

problems = []


def problem(where, what):
    problems.append(f"{where}: {what}")


def name_of(obj):
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def selects(match_labels, labels):
    """A label selector's matchLabels against an object's labels."""
    return all(labels.get(k) == v for k, v in (match_labels or {}).items())


def quantity(value):
    """A Kubernetes quantity ("100m", "32Mi", "1", "1G") as a float."""
    text = str(value)
    suffixes = {
        "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
        "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
    }
    for suffix in sorted(suffixes, key=len, reverse=True):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * suffixes[suffix]
    return float(text)


def toml_keys(table, prefix=""):
    """Dotted keys of a TOML table; arrays of tables count as one key."""
    keys = set()
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            keys |= toml_keys(value, dotted + ".")
        else:
            keys.add(dotted)
    return keys


def strict(schema):
    """A CRD schema that rejects unknown fields, as the API server does with
    kubectl's default field validation (objects with `properties` and neither
    `additionalProperties` nor x-kubernetes-preserve-unknown-fields)."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def check_container_security(where, container, pod_sc):
    sc = container.get("securityContext") or {}
    if sc.get("allowPrivilegeEscalation") is not False:
        problem(where, "securityContext.allowPrivilegeEscalation must be false")
    if sc.get("readOnlyRootFilesystem") is not True:
        problem(where, "securityContext.readOnlyRootFilesystem must be true")
    caps = sc.get("capabilities") or {}
    if "ALL" not in (caps.get("drop") or []):
        problem(where, "securityContext.capabilities.drop must contain ALL")
    if caps.get("add"):
        problem(where, f"adds capabilities {caps['add']}")
    if sc.get("privileged"):
        problem(where, "is privileged")
    non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
    if non_root is not True:
        problem(where, "runAsNonRoot must be true")
    uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
    if uid == 0:
        problem(where, "runs as uid 0")
    seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
    if seccomp != "RuntimeDefault":
        problem(where, f"seccompProfile must be RuntimeDefault, is {seccomp}")


def check_resources(where, container):
    res = container.get("resources") or {}
    requests, limits = res.get("requests") or {}, res.get("limits") or {}
    for key in ("cpu", "memory"):
        if key not in requests:
            problem(where, f"resources.requests.{key} is not set")
    if "memory" not in limits:
        problem(where, "resources.limits.memory is not set")
    for key in ("cpu", "memory"):
        if key in requests and key in limits and quantity(limits[key]) < quantity(requests[key]):
            problem(where, f"resources.limits.{key} is below the request")


def probe_path(where, container, kind, path, port):
    probe = container.get(kind)
    if not probe:
        problem(where, f"has no {kind}")
        return
    get = probe.get("httpGet") or {}
    if get.get("path") != path:
        problem(where, f"{kind} must GET {path}, gets {get.get('path')}")
    named = {p.get("name"): p.get("containerPort") for p in container.get("ports") or []}
    probe_port = named.get(get.get("port"), get.get("port"))
    if probe_port != port:
        problem(where, f"{kind} port {get.get('port')} is not the service port {port}")


def mounted_file(pod, container, path):
    """The volume and the key within it that a container sees at `path`."""
    for mount in container.get("volumeMounts") or []:
        root = mount["mountPath"].rstrip("/") + "/"
        if path.startswith(root) and not mount.get("subPath"):
            volume = next((v for v in pod.get("volumes") or [] if v["name"] == mount["name"]), None)
            return volume, path[len(root):]
    return None, None


def check_config_file(where, pod, container, configmaps):
    """The TOML the container loads through CHATBOT_CONFIG_FILE."""
    env = {e["name"]: e.get("value") for e in container.get("env") or []}
    path = env.get("CHATBOT_CONFIG_FILE")
    if not path:
        problem(where, "CHATBOT_CONFIG_FILE is not set")
        return None
    volume, key = mounted_file(pod, container, path)
    if volume is None or "configMap" not in volume:
        problem(where, f"CHATBOT_CONFIG_FILE {path} is not in a mounted ConfigMap")
        return None
    for mount in container.get("volumeMounts") or []:
        if mount["name"] == volume["name"] and mount["mountPath"].rstrip("/") == "/etc/chatbot":
            problem(where, "the ConfigMap is mounted over /etc/chatbot (it hides default.toml)")
    cm = configmaps.get(volume["configMap"].get("name"))
    if cm is None:
        problem(where, f"ConfigMap {volume['configMap'].get('name')} is not in the render")
        return None
    text = (cm.get("data") or {}).get(key)
    if text is None:
        problem(where, f"ConfigMap {cm['metadata']['name']} has no key {key}")
        return None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        problem(where, f"{key} in ConfigMap {cm['metadata']['name']} is not TOML: {e}")
        return None


def check_secret_files(where, pod, container):
    """Every CHATBOT__..._FILE variable names a file a mounted Secret provides."""
    for var in container.get("env") or []:
        name = var["name"]
        if not (name.startswith("CHATBOT__") and name.endswith("_FILE")):
            continue
        if "valueFrom" in var or not var.get("value"):
            problem(where, f"{name} must be a plain path")
            continue
        volume, key = mounted_file(pod, container, var["value"])
        if volume is None or "secret" not in volume:
            problem(where, f"{name}={var['value']} is not in a mounted Secret")
            continue
        secret = volume["secret"]
        if secret.get("optional"):
            problem(where, f"{name}: Secret volume {volume['name']} is optional")
        if secret.get("secretName") != SECRET_NAME:
            problem(where, f"{name}: Secret volume {volume['name']} is not from {SECRET_NAME}")
        if secret.get("items") is None:
            secret_key = key
        else:
            listed = [i["key"] for i in secret["items"] if i.get("path") == key]
            if not listed:
                problem(where, f"{name}: Secret volume {volume['name']} does not list {key}")
                continue
            secret_key = listed[0]
        if secret_key not in SECRET_KEYS:
            problem(where, f"{name}: Secret key {secret_key} is not one of the documented {sorted(SECRET_KEYS)}")
    for var in container.get("env") or []:
        value = var.get("value") or ""
        if "://" in value and "@" in value:
            problem(where, f"{var['name']} holds a URL with credentials in plain text")


def check_configuration(where, settings, service, container_port, metrics_port):
    section, _ = SERVICES[service]
    server = (settings.get(section) or {}).get("server") or {}
    if server.get("host") != "0.0.0.0":
        problem(where, f"{section}.server.host must be 0.0.0.0 in pods, is {server.get('host')}")
    if server.get("port") != container_port:
        problem(where, f"{section}.server.port {server.get('port')} is not containerPort {container_port}")
    if server.get("metrics_port") != metrics_port:
        problem(
            where,
            f"{section}.server.metrics_port {server.get('metrics_port')} is not the metrics containerPort {metrics_port}",
        )
    if (settings.get("database") or {}).get("migrate_on_start") is not False:
        problem(where, "database.migrate_on_start must be false (migrations run once per rollout)")


def check_known_keys(where, settings):
    known = toml_keys(tomllib.loads(DEFAULT_TOML.read_text()))
    servers = {k.rsplit(".", 1)[0] for k in known if k.endswith(".server.port")}
    for server in servers:
        known |= {f"{server}.{extra}" for extra in EXTRA_SERVER_KEYS}
    for key in sorted(toml_keys(settings)):
        # Maps whose keys are free (aggregator.services) are checked by prefix.
        if key not in known and not key.startswith(("aggregator.services.", "aggregator.metrics.")):
            problem(where, f"unknown configuration key {key} (services refuse to start)")


def check_deployment(dep, configmaps):
    name = dep["metadata"]["name"]
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    pod_labels = spec["template"]["metadata"].get("labels") or {}
    annotations = spec["template"]["metadata"].get("annotations") or {}
    pod_sc = pod.get("securityContext") or {}
    where = f"Deployment/{name}"

    if not selects(spec["selector"].get("matchLabels"), pod_labels):
        problem(where, "selector does not match the pod template's labels")
    strategy = spec.get("strategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        problem(where, "strategy must be RollingUpdate")
    if str((strategy.get("rollingUpdate") or {}).get("maxUnavailable")) not in ("0", "0%"):
        problem(where, "rollingUpdate.maxUnavailable must be 0")
    if pod.get("automountServiceAccountToken") is not False:
        problem(where, "automountServiceAccountToken must be false")
    if pod_sc.get("runAsNonRoot") is not True:
        problem(where, "pod securityContext.runAsNonRoot must be true")
    if (pod_sc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        problem(where, "pod seccompProfile must be RuntimeDefault")
    for volume in pod.get("volumes") or []:
        if "hostPath" in volume:
            problem(where, f"volume {volume['name']} is a hostPath")

    main = [c for c in pod["containers"] if c["name"] == name]
    if len(main) != 1:
        problem(where, f"needs one container named {name}")
        return None
    container = main[0]
    _, binary = SERVICES[name]
    if (container.get("command") or [""])[0] != f"/usr/local/bin/{binary}" or container.get("args"):
        problem(where, f"container must run /usr/local/bin/{binary}")
    ports = [p for p in container.get("ports") or [] if p.get("name") == "http"]
    if len(ports) != 1:
        problem(where, "needs one container port named http")
        return None
    port = ports[0]["containerPort"]
    metrics = [p for p in container.get("ports") or [] if p.get("name") == "metrics"]
    if len(metrics) != 1:
        problem(where, "needs one container port named metrics (server.metrics_port)")
        return None
    metrics_port = metrics[0]["containerPort"]

    main_settings = None
    for c in pod.get("initContainers", []) + pod["containers"]:
        cwhere = f"{where} container {c['name']}"
        check_container_security(cwhere, c, pod_sc)
        check_resources(cwhere, c)
        check_secret_files(cwhere, pod, c)
        settings = check_config_file(cwhere, pod, c, configmaps)
        if settings is not None:
            check_known_keys(cwhere, settings)
            check_configuration(cwhere, settings, name, port, metrics_port)
            if c is container:
                main_settings = settings
                server = (settings.get(SERVICES[name][0]) or {}).get("server") or {}
                grace = server.get("shutdown_grace_secs", DEFAULT_GRACE_SECS)
                pre_stop = ((container.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}
                sleep = pre_stop.get("seconds", 0)
                term = pod.get("terminationGracePeriodSeconds", 30)
                if not pre_stop:
                    problem(where, "needs a preStop sleep (endpoints go before draining starts)")
                if term <= 60 or term <= 2 * grace + sleep:
                    problem(
                        where,
                        f"terminationGracePeriodSeconds {term} must exceed 60 and "
                        f"2 x shutdown_grace_secs ({grace}) + preStop sleep ({sleep})",
                    )

    probe_path(where, container, "startupProbe", "/livez", port)
    probe_path(where, container, "livenessProbe", "/livez", port)
    probe_path(where, container, "readinessProbe", "/readyz", port)

    if annotations.get("prometheus.io/scrape") != "true":
        problem(where, 'pod annotation prometheus.io/scrape must be "true"')
    if annotations.get("prometheus.io/port") != str(metrics_port):
        problem(where, f"pod annotation prometheus.io/port must be the metrics port {metrics_port}")
    if annotations.get("prometheus.io/path") != "/metrics":
        problem(where, "pod annotation prometheus.io/path must be /metrics")

    replicas = spec.get("replicas", 1)
    if name in SCALED and replicas < 2:
        problem(where, f"needs at least 2 replicas, has {replicas}")
    return {"labels": pod_labels, "port": port, "replicas": replicas, "pod": pod, "settings": main_settings}


def check_cronjob(cj, configmaps):
    """A scheduled chatbot-ops job: the same pod hardening as the services,
    its secrets and configuration, one run at a time, a failure visible."""
    name = cj["metadata"]["name"]
    where = f"CronJob/{name}"
    if name not in CRONJOBS:
        problem(where, "unexpected CronJob")
        return
    spec = cj["spec"]
    if len(spec.get("schedule", "").split()) != 5:
        problem(where, f"schedule {spec.get('schedule')!r} is not a five-field cron line")
    if spec.get("concurrencyPolicy") != "Forbid":
        problem(where, "concurrencyPolicy must be Forbid (two backups at once race on retention)")
    job = spec["jobTemplate"]["spec"]
    if "activeDeadlineSeconds" not in job:
        problem(where, "jobTemplate needs activeDeadlineSeconds (a hung run must end)")
    if job.get("backoffLimit", 6) > 2:
        problem(where, "backoffLimit above 2 hides a failing backup behind retries")
    pod = job["template"]["spec"]
    pod_sc = pod.get("securityContext") or {}
    if pod.get("restartPolicy") not in ("Never", "OnFailure"):
        problem(where, "restartPolicy must be Never or OnFailure")
    if pod.get("automountServiceAccountToken") is not False:
        problem(where, "automountServiceAccountToken must be false")
    for volume in pod.get("volumes") or []:
        if "hostPath" in volume:
            problem(where, f"volume {volume['name']} is a hostPath")
    containers = pod["containers"]
    if len(containers) != 1:
        problem(where, "needs exactly one container")
        return
    container = containers[0]
    if (container.get("command") or []) + (container.get("args") or []) != CRONJOBS[name]:
        problem(where, f"container must run {' '.join(CRONJOBS[name])}")
    cwhere = f"{where} container {container['name']}"
    check_container_security(cwhere, container, pod_sc)
    check_resources(cwhere, container)
    check_secret_files(cwhere, pod, container)
    settings = check_config_file(cwhere, pod, container, configmaps)
    if settings is not None:
        check_known_keys(cwhere, settings)
    env = {e["name"]: e.get("value") for e in container.get("env") or []}
    bucket = env.get("CHATBOT__OPS__BACKUP__S3__BUCKET") or (
        ((settings or {}).get("ops") or {}).get("backup", {}).get("s3", {}).get("bucket")
    )
    if not bucket:
        problem(where, "no bucket (ops.backup.s3.bucket): the backup would stay on the pod's scratch disk")
    backup_dir = env.get("CHATBOT__OPS__BACKUP__DIR")
    mounts = {m["mountPath"].rstrip("/") for m in container.get("volumeMounts") or []}
    if backup_dir not in mounts:
        problem(where, f"CHATBOT__OPS__BACKUP__DIR {backup_dir} is not a mounted volume (the root is read-only)")


def check_migrations(deployments, jobs):
    runs = []
    for name, info in deployments.items():
        for c in info["pod"].get("initContainers") or []:
            if c.get("command", []) + c.get("args", []) == ["/usr/local/bin/chat", "migrate"]:
                runs.append(f"init container of {name}")
    for job in jobs:
        for c in job["spec"]["template"]["spec"]["containers"]:
            if (c.get("command") or []) + (c.get("args") or []) == ["/usr/local/bin/chat", "migrate"]:
                runs.append(f"Job/{job['metadata']['name']}")
    if len(runs) != 1:
        problem("migrations", f"`chat migrate` must run in exactly one place, runs in {runs or 'none'}")


def check_services(services, deployments):
    for name, info in deployments.items():
        svc = services.get(name)
        where = f"Service/{name}"
        if svc is None:
            problem(where, "missing")
            continue
        if not selects(svc["spec"].get("selector"), info["labels"]) or not svc["spec"].get("selector"):
            problem(where, f"selector does not select the {name} pods")
        ports = svc["spec"].get("ports") or []
        if not any(p.get("name") == "http" and p.get("targetPort") in ("http", info["port"]) for p in ports):
            problem(where, "needs a port named http targeting the pods' http port")
        headless = svc["spec"].get("clusterIP") == "None"
        if name in HEADLESS and not headless:
            problem(where, "must be headless (clusterIP: None) so the gateway balances over the pods")
        if svc["spec"].get("type", "ClusterIP") not in ("ClusterIP",):
            problem(where, f"type {svc['spec'].get('type')}: only the gateway is public, through your own ingress")


def check_peer_urls(deployments, services, namespace):
    """The peers' URLs in each service's configuration name a Service of the
    render (`name`, `name.namespace`, or `name.namespace.svc...`) and its port."""
    for name, info in deployments.items():
        settings = info["settings"] or {}
        urls = {}
        if name == "gateway":
            gateway = settings.get("gateway") or {}
            urls = {f"gateway.{k}": gateway.get(k) for k in ("chat_url", "session_url", "aggregator_url")}
        if name == "health-aggregator":
            peers = (settings.get("aggregator") or {}).get("services") or {}
            urls = {f"aggregator.services.{k}": v for k, v in peers.items()}
        for key, url in urls.items():
            where = f"Deployment/{name} configuration {key}"
            if not url:
                problem(where, "is not set (the default points at 127.0.0.1)")
                continue
            parts = urlsplit(url)
            labels = (parts.hostname or "").split(".")
            svc = services.get(labels[0])
            if svc is None or (len(labels) > 1 and labels[1] != namespace):
                problem(where, f"{url} names no Service of the render")
                continue
            if parts.port not in [p.get("port") for p in svc["spec"].get("ports") or []]:
                problem(where, f"{url}: Service/{labels[0]} has no port {parts.port}")


def check_autoscalers(hpas, deployments):
    for name in SCALED:
        targeting = [
            h for h in hpas
            if h["spec"]["scaleTargetRef"].get("kind") == "Deployment"
            and h["spec"]["scaleTargetRef"].get("name") == name
        ]
        where = f"HorizontalPodAutoscaler for {name}"
        if len(targeting) != 1:
            problem(where, f"needs exactly one (autoscaling/v2), found {len(targeting)}")
            continue
        hpa = targeting[0]
        if hpa["apiVersion"] != "autoscaling/v2":
            problem(where, "must be autoscaling/v2")
        low, high = hpa["spec"].get("minReplicas", 1), hpa["spec"]["maxReplicas"]
        if low < 2 or high < low:
            problem(where, f"minReplicas {low} must be at least 2 and at most maxReplicas {high}")
        if name in deployments and deployments[name]["replicas"] != low:
            problem(where, f"minReplicas {low} differs from the Deployment's replicas {deployments[name]['replicas']}")
        if not hpa["spec"].get("metrics"):
            problem(where, "has no metrics")
        for metric in hpa["spec"].get("metrics") or []:
            if metric.get("type") == "Resource" and metric["resource"]["name"] == "cpu":
                container = next(
                    c for c in deployments[name]["pod"]["containers"] if c["name"] == name
                )
                if "cpu" not in ((container.get("resources") or {}).get("requests") or {}):
                    problem(where, "scales on CPU utilisation but the container has no CPU request")


def check_budgets(pdbs, deployments):
    for name in BUDGETED:
        info = deployments.get(name)
        if info is None:
            continue
        covering = [p for p in pdbs if selects(p["spec"]["selector"].get("matchLabels"), info["labels"])]
        where = f"PodDisruptionBudget for {name}"
        if len(covering) != 1:
            problem(where, f"needs exactly one, found {len(covering)}")
            continue
        spec = covering[0]["spec"]
        if "maxUnavailable" in spec:
            if quantity(str(spec["maxUnavailable"]).rstrip("%")) < 1:
                problem(where, "maxUnavailable 0 blocks every node drain")
        elif "minAvailable" in spec:
            if str(spec["minAvailable"]).endswith("%") or spec["minAvailable"] >= info["replicas"]:
                problem(where, "minAvailable must stay below the replicas, or drains block")


def peer_allows_pod(peer, labels, namespace_labels):
    """Whether a NetworkPolicy `from` peer admits a pod of this namespace."""
    if "ipBlock" in peer:
        return True
    ns = peer.get("namespaceSelector")
    if ns is not None and (ns.get("matchExpressions") or not selects(ns.get("matchLabels"), namespace_labels)):
        return False  # other namespaces (Prometheus; checked separately)
    return selects((peer.get("podSelector") or {}).get("matchLabels"), labels)


def check_network_policies(policies, deployments, namespace_labels):
    ingress_policies = [p for p in policies if "Ingress" in (p["spec"].get("policyTypes") or ["Ingress"])]
    deny_all = [
        p for p in ingress_policies
        if not p["spec"]["podSelector"] and not p["spec"].get("ingress")
    ]
    if not deny_all:
        problem("NetworkPolicy", "no default-deny ingress policy (podSelector: {} without rules)")
    for name, info in deployments.items():
        selecting = [p for p in ingress_policies if selects(p["spec"]["podSelector"].get("matchLabels"), info["labels"])]
        where = f"NetworkPolicy for {name}"
        # Rules that open the service's port (a rule without ports opens all).
        rules = [
            r for p in selecting for r in p["spec"].get("ingress") or []
            if not r.get("ports") or info["port"] in [x.get("port") for x in r["ports"]]
        ]
        if not rules:
            problem(where, f"admits nothing on port {info['port']}")
            continue
        if name == "gateway" and any(not r.get("from") for r in rules):
            continue  # the public API: every source
        other_namespaces = False
        for rule in rules:
            peers = rule.get("from")
            if not peers:
                problem(where, "a rule without `from` admits every source")
                continue
            for peer in peers:
                if "ipBlock" in peer and name != "gateway":
                    problem(where, f"admits an ipBlock {peer['ipBlock']}")
                ns = peer.get("namespaceSelector")
                if ns is not None:
                    if not (ns.get("matchLabels") or ns.get("matchExpressions")):
                        if name != "gateway":
                            problem(where, "admits every namespace")
                    elif not selects(ns.get("matchLabels"), namespace_labels):
                        other_namespaces = True
            for other, other_info in deployments.items():
                if any(peer_allows_pod(peer, other_info["labels"], namespace_labels) for peer in peers):
                    if other not in CALLERS[name]:
                        problem(where, f"admits {other}, which does not call it")
        for caller in CALLERS[name]:
            if caller in deployments and not any(
                peer_allows_pod(peer, deployments[caller]["labels"], namespace_labels)
                for rule in rules for peer in rule.get("from") or []
            ):
                problem(where, f"does not admit its caller {caller}")
        if not other_namespaces:
            what = "Prometheus and the ingress controller" if name == "gateway" else "Prometheus"
            problem(where, f"does not admit {what} (a namespaceSelector)")


def check_service_monitor(sm, services):
    where = name_of(sm)
    schema = json.loads(SERVICEMONITOR_SCHEMA.read_text())
    schema.pop("$comment", None)
    try:
        jsonschema.Draft202012Validator(strict(schema)).validate(sm)
    except jsonschema.ValidationError as e:
        path = ".".join(str(p) for p in e.absolute_path)
        problem(where, f"does not validate against the ServiceMonitor CRD schema: {path}: {e.message}")
        return
    selector = sm["spec"]["selector"].get("matchLabels") or {}
    ns = sm["spec"].get("namespaceSelector") or {}
    if ns and not ns.get("any") and sm["metadata"].get("namespace") not in (ns.get("matchNames") or []):
        problem(where, "namespaceSelector leaves out its own namespace")
    ports = {e.get("port") for e in sm["spec"]["endpoints"]}
    for name, svc in services.items():
        if not selects(selector, svc["metadata"].get("labels") or {}):
            problem(where, f"does not select Service/{name}")
        elif not ports & {p.get("name") for p in svc["spec"].get("ports") or []}:
            problem(where, f"scrapes no port of Service/{name}")
    for endpoint in sm["spec"]["endpoints"]:
        if endpoint.get("path", "/metrics") != "/metrics":
            problem(where, "must scrape /metrics")
    job_label = sm["spec"].get("jobLabel")
    for name, svc in services.items():
        if (svc["metadata"].get("labels") or {}).get(job_label) != "chatbot":
            problem(where, f'jobLabel must give job="chatbot" (the alert rules\' job) for Service/{name}')


def main(path):
    docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)

    namespaces = by_kind.get("Namespace", [])
    if len(namespaces) != 1:
        problem("Namespace", f"the render needs one Namespace, has {len(namespaces)}")
    namespace = namespaces[0]["metadata"]["name"] if namespaces else "chatbot"
    # The API server adds kubernetes.io/metadata.name to every namespace.
    namespace_labels = dict(namespaces[0]["metadata"].get("labels") or {}) if namespaces else {}
    namespace_labels["kubernetes.io/metadata.name"] = namespace
    for d in docs:
        labels = d["metadata"].get("labels") or {}
        if labels.get("app.kubernetes.io/part-of") != "chatbot":
            problem(name_of(d), "label app.kubernetes.io/part-of=chatbot is missing")
        if "app.kubernetes.io/managed-by" not in labels:
            problem(name_of(d), "label app.kubernetes.io/managed-by is missing")
        if d["kind"] not in CLUSTER_SCOPED and d["metadata"].get("namespace") != namespace:
            problem(name_of(d), f"namespace {d['metadata'].get('namespace')} is not {namespace}")

    example = SECRET_EXAMPLE.read_text()
    for key in sorted(SECRET_KEYS):
        if f"{key}=" not in example:
            problem(SECRET_EXAMPLE.name, f"does not document the Secret key {key}")
    for secret in by_kind.get("Secret", []):
        problem(name_of(secret), "a Secret in the manifests: secret values are created by hand, never committed")

    configmaps = {c["metadata"]["name"]: c for c in by_kind.get("ConfigMap", [])}
    deployments = {}
    for dep in by_kind.get("Deployment", []):
        name = dep["metadata"]["name"]
        if name not in SERVICES:
            problem(name_of(dep), "unexpected Deployment")
            continue
        info = check_deployment(dep, configmaps)
        if info is not None:
            deployments[name] = info
    for name in SERVICES:
        if name not in deployments and not any(p.startswith(f"Deployment/{name}:") for p in problems):
            problem(f"Deployment/{name}", "missing")

    for cj in by_kind.get("CronJob", []):
        check_cronjob(cj, configmaps)
    check_migrations(deployments, by_kind.get("Job", []))
    services = {s["metadata"]["name"]: s for s in by_kind.get("Service", [])}
    check_services(services, deployments)
    check_peer_urls(deployments, services, namespace)
    check_autoscalers(by_kind.get("HorizontalPodAutoscaler", []), deployments)
    check_budgets(by_kind.get("PodDisruptionBudget", []), deployments)
    check_network_policies(by_kind.get("NetworkPolicy", []), deployments, namespace_labels)
    for sm in by_kind.get("ServiceMonitor", []):
        check_service_monitor(sm, services)

    for p in dict.fromkeys(problems):
        print(f"PROBLEM {p}")
    if problems:
        return 1
    print(json.dumps({
        "objects": len(docs),
        "kinds": {k: len(v) for k, v in sorted(by_kind.items())},
        "namespace": namespace,
        "replicas": {k: v["replicas"] for k, v in sorted(deployments.items())},
    }))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
