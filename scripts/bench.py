#!/usr/bin/env python3
"""Load benchmark of the chatbot stack (run it through scripts/bench.sh).

Starts a throwaway PostgreSQL and Redis, the Ollama simulator and the four
services (release build, persistence and full observability on: info logs,
metrics, traces), then drives them with oha at a constant arrival rate with
latency correction, so waiting is not hidden:

  floor      the simulator alone (POST /api/chat, not streamed)
  chat       the full path through the gateway, not streamed
  openai     the same exchange through the OpenAI-compatible route
             (POST /v1/chat/completions, the client sending the system
             prompt, as the simulator's floor request does)
  stream     the full path, streamed (whole stream timed; the time-to-first-
             token overhead comes from the gateway's own overhead histogram)
  health     GET /health on the gateway
  search     rising rates until the stack has errors or falls short of the
             rate: the highest rate sustained with no errors, and the highest
             with a p99 overhead under 10 ms

Overhead = full path minus floor, per percentile, at the same rate. CPU and
resident memory per service are read from /proc during the main chat run.
Writes results.json and results.md into --out. Python 3 standard library only.
"""

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ["session", "chat", "gateway", "health-aggregator"]
MODEL = "llama3.2:1b"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if 200 <= r.status < 300:
                    return
        except Exception:
            pass
        time.sleep(0.2)
    raise SystemExit(f"bench: {url} did not answer within {timeout} s")


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


class Stack:
    """The stack's processes, started on free ports in a temporary directory."""

    api_key = None

    def __init__(self, profile, extra_env=()):
        self.extra_env = dict(kv.split("=", 1) for kv in extra_env)
        self.bin = ROOT / "target" / profile
        self.dir = Path(tempfile.mkdtemp(prefix="chatbot-bench-"))
        self.procs = {}
        self.ports = {name: free_port() for name in SERVICES + ["sim", "pg", "redis"]}
        self.metrics_ports = {name: free_port() for name in SERVICES}

    def url(self, name):
        return f"http://127.0.0.1:{self.ports[name]}"

    def metrics_url(self, name):
        return f"http://127.0.0.1:{self.metrics_ports[name]}"

    def start(self):
        self._postgres()
        self._spawn("redis", ["redis-server", "--port", str(self.ports["redis"]), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no", "--dir", str(self.dir)], {})
        self._spawn("ollama-sim", [str(self.bin / "ollama-sim")],
                    {"OLLAMA_SIM_PORT": str(self.ports["sim"]), "OLLAMA_SIM_LOG_LEVEL": "warn"})
        wait_http(self.url("sim") + "/api/version")
        env = self._service_env()
        for name in SERVICES:
            if name == "gateway":
                self.api_key = self._api_key(env)
            self._spawn(name, [str(self.bin / name)], env)
            wait_http(self.url(name) + "/livez")
        for name in SERVICES:
            wait_http(self.url(name) + "/readyz")
        wait_http(self.url("gateway") + "/health")

    def _api_key(self, env):
        """An API key for the load (auth and limits stay on, as deployed),
        with a limit no run reaches; None for builds without keys."""
        ops = self.bin / "chatbot-ops"
        made = subprocess.run([str(ops), "keys", "create", "--name", "bench", "--rpm", "60000000", "--streams", "1000000",
                               "--json"], env={**os.environ, **env}, capture_output=True, text=True)
        if made.returncode != 0:
            print(f"bench: no API key ({made.stderr.strip()[:120]}); running without one")
            return None
        return json.loads(made.stdout)["key"]

    def _postgres(self):
        bindir = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]
        data = self.dir / "pg"
        as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if os.geteuid() == 0:
            os.chmod(self.dir, 0o755)
            data.mkdir()
            shutil.chown(data, "postgres")
        run(as_pg + [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"])
        opts = f"-c listen_addresses=127.0.0.1 -c port={self.ports['pg']} -c unix_socket_directories={data}"
        self.stop_pg = as_pg + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]
        self.start_pg = as_pg + [str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(data / "log"),
                                 "-w", "start"]
        run(self.start_pg)
        run([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.ports["pg"]), "-U", "postgres", "chatbot"])

    def _service_env(self):
        p = self.ports
        env = {
            "CHATBOT_CONFIG_DIR": str(ROOT / "config"),
            "CHATBOT__DATABASE__URL": f"postgres://postgres@127.0.0.1:{p['pg']}/chatbot",
            "CHATBOT__REDIS__URL": f"redis://127.0.0.1:{p['redis']}",
            "CHATBOT__OLLAMA__URL": self.url("sim"),
            "CHATBOT__GATEWAY__CHAT_URL": self.url("chat"),
            "CHATBOT__GATEWAY__SESSION_URL": self.url("session"),
            "CHATBOT__GATEWAY__AGGREGATOR_URL": self.url("health-aggregator"),
            "CHATBOT__AGGREGATOR__SERVICES__GATEWAY": self.url("gateway"),
            "CHATBOT__AGGREGATOR__SERVICES__CHAT": self.url("chat"),
            "CHATBOT__AGGREGATOR__SERVICES__SESSION": self.url("session"),
            "CHATBOT__LOG__DIR": str(self.dir / "logs"),
            "CHATBOT__CHAT__OUTBOX__PATH": str(self.dir / "chat-outbox.redb"),
            **self.extra_env,
        }
        for name, section in [("gateway", "GATEWAY"), ("chat", "CHAT"), ("session", "SESSION"),
                              ("health-aggregator", "AGGREGATOR")]:
            env[f"CHATBOT__{section}__SERVER__PORT"] = str(p[name])
            env[f"CHATBOT__{section}__SERVER__METRICS_PORT"] = str(self.metrics_ports[name])
            if name != "health-aggregator":
                env[f"CHATBOT__AGGREGATOR__METRICS__{section}"] = self.metrics_url(name)
        return env

    def _spawn(self, name, cmd, env):
        out = open(self.dir / f"{name}.stdout", "ab")
        self.procs[name] = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=out,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def pid(self, name):
        return self.procs[name].pid

    def cpu(self):
        """CPU seconds so far of each service, of PostgreSQL (all its
        processes), Redis, the simulator and the load generator (oha, as
        this script's finished children)."""
        seconds = {n: cpu_seconds(self.pid(n)) for n in SERVICES + ["ollama-sim", "redis"]}
        postmaster = int((self.dir / "pg" / "postmaster.pid").read_text().split()[0])
        seconds["postgres"] = sum(cpu_seconds(pid) for pid in [postmaster] + children(postmaster))
        own = resource.getrusage(resource.RUSAGE_CHILDREN)
        seconds["oha"] = own.ru_utime + own.ru_stime
        return seconds

    def stop(self):
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        subprocess.run(self.stop_pg, capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


WARMUP = {"seconds": 3}


AUTH = {"header": None}


def oha(url, rate, seconds, body=None, connections=64, warmup=True):
    """One constant-rate run, after a discarded warm-up at the same rate (so
    pools and connections are open, as in a service that has been running);
    latencies in milliseconds."""
    if warmup and WARMUP["seconds"] > 0:
        oha(url, rate, WARMUP["seconds"], body, connections, warmup=False)
    cmd = ["oha", "--no-tui", "--output-format", "json", "--latency-correction",
           "--wait-ongoing-requests-after-deadline",
           "-z", f"{seconds}s", "-q", str(rate), "-c", str(connections), url]
    if body is not None:
        cmd += ["-m", "POST", "-H", "Content-Type: application/json", "-d", json.dumps(body)]
    if AUTH["header"]:  # to the simulator too: the same request bytes on both sides
        cmd += ["-H", AUTH["header"]]
    out = json.loads(run(cmd).stdout)
    pct = out.get("latencyPercentiles", {})
    first = out.get("firstBytePercentiles", {})
    codes = {str(k): v for k, v in (out.get("statusCodeDistribution") or {}).items()}
    ok = sum(v for k, v in codes.items() if k.startswith("2"))
    failures = sum(v for k, v in codes.items() if not k.startswith("2"))
    failures += sum((out.get("errorDistribution") or {}).values())
    ms = lambda v: round((v or 0.0) * 1000, 3)
    return {
        "rate": rate, "seconds": seconds, "requests": ok + failures, "errors": failures,
        "achieved_rps": round(out["summary"].get("requestsPerSec") or 0.0, 1),
        "p50_ms": ms(pct.get("p50")), "p95_ms": ms(pct.get("p95")), "p99_ms": ms(pct.get("p99")),
        "max_ms": ms(out["summary"].get("slowest")),
        "first_byte_p50_ms": ms(first.get("p50")), "first_byte_p99_ms": ms(first.get("p99")),
        "error_kinds": {**{f"status {k}": v for k, v in codes.items() if not k.startswith("2")},
                        **(out.get("errorDistribution") or {})},
    }


def overhead(full, floor):
    return {k: round(full[k] - floor[k], 3) for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")}


def cpu_seconds(pid):
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # it has just exited
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(parent):
    """Process ids whose parent is `parent`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == parent:
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def rss_mb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return None


def gateway_stream_overhead(stack):
    """p50/p99 of the gateway's own streaming overhead (time to first byte
    minus the LLM's time to first token), from its histogram."""
    text = urllib.request.urlopen(stack.metrics_url("gateway") + "/metrics").read().decode()
    buckets = []
    for line in text.splitlines():
        if line.startswith('chatbot_gateway_overhead_seconds_bucket{') and 'mode="stream"' in line:
            le = line.split('le="')[1].split('"')[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1])))
    if not buckets or buckets[-1][1] == 0:
        return None
    total = buckets[-1][1]
    quantile = lambda q: next(le for le, count in buckets if count >= q * total)
    return {"p50_ms_at_most": quantile(0.5) * 1000, "p99_ms_at_most": quantile(0.99) * 1000}


def chat_body(stream=False):
    return {"user_id": "bench-user", "message": "Hello, how do I reset my password?", "stream": stream}


def floor_body(stream=False):
    return {"model": MODEL, "stream": stream, "messages": [
        {"role": "system", "content": "You are a helpful, concise customer-support assistant."},
        {"role": "user", "content": "Hello, how do I reset my password?"}]}


def openai_body():
    return {"model": MODEL, "messages": floor_body()["messages"], "user": "bench-user"}


def measure(stack, args):
    gw, sim = stack.url("gateway"), stack.url("sim")
    rate, secs = args.rate, args.seconds
    results = {"rate": rate, "seconds": secs}
    results["floor"] = oha(sim + "/api/chat", rate, secs, floor_body())
    before, started = stack.cpu(), time.time()
    results["chat"] = oha(gw + "/api/chat", rate, secs, chat_body())
    wall, after = time.time() - started, stack.cpu()
    results["resources"] = {n: {"cpu_cores": round((after[n] - before[n]) / wall, 3),
                                "rss_mb": rss_mb(stack.pid(n))} for n in SERVICES}
    results["machine_cpu_cores"] = {n: round((after[n] - before[n]) / wall, 3) for n in after}
    results["chat"]["overhead"] = overhead(results["chat"], results["floor"])
    results["openai"] = oha(gw + "/v1/chat/completions", rate, secs, openai_body())
    results["openai"]["overhead"] = overhead(results["openai"], results["floor"])
    results["openai"]["overhead_minus_chat_p50_ms"] = round(
        results["openai"]["overhead"]["p50_ms"] - results["chat"]["overhead"]["p50_ms"], 3)
    results["stream"] = oha(gw + "/api/chat", rate, secs, chat_body(stream=True))
    results["stream"]["overhead"] = overhead(results["stream"], results["floor"])
    results["floor_stream"] = oha(sim + "/api/chat", rate, secs, floor_body(stream=True))
    results["stream"]["first_token_overhead"] = {
        "p50_ms": round(results["stream"]["first_byte_p50_ms"] - results["floor_stream"]["first_byte_p50_ms"], 3),
        "p99_ms": round(results["stream"]["first_byte_p99_ms"] - results["floor_stream"]["first_byte_p99_ms"], 3),
        "gateway_histogram": gateway_stream_overhead(stack),
    }
    results["health"] = oha(gw + "/health", args.health_rate, secs)
    results["search"] = search(stack, args)
    sustained = [s["rate"] for s in results["search"] if s["sustained"]]
    passing = [s["rate"] for s in results["search"] if s["passed"]]
    results["max_rate_no_errors_p99_overhead_under_10ms"] = max(passing) if passing else None
    results["max_rate_sustained_no_errors"] = max(sustained) if sustained else None
    return results


def search(stack, args):
    steps = []
    for rate in args.search:
        floor = oha(stack.url("sim") + "/api/chat", rate, args.search_seconds, floor_body())
        full = oha(stack.url("gateway") + "/api/chat", rate, args.search_seconds, chat_body())
        extra = overhead(full, floor)
        sustained = full["errors"] == 0 and full["achieved_rps"] >= 0.95 * rate
        passed = sustained and extra["p99_ms"] < 10
        steps.append({"rate": rate, "passed": passed, "sustained": sustained, "errors": full["errors"],
                      "achieved_rps": full["achieved_rps"], "p99_ms": full["p99_ms"], "overhead": extra})
        print(f"  search {rate}/s: {'sustained' if sustained else 'NOT sustained'}, "
              f"errors={full['errors']}, p99 overhead={extra['p99_ms']} ms", flush=True)
        if not sustained:
            break
    return steps


def markdown(r):
    rows = ["| run | rate/s | achieved/s | errors | p50 ms | p95 ms | p99 ms | max ms | overhead p50 / p99 ms |",
            "|---|---|---|---|---|---|---|---|---|"]
    for name in ("floor", "chat", "openai", "floor_stream", "stream", "health"):
        x = r[name]
        extra = x.get("overhead")
        over = f"{extra['p50_ms']} / {extra['p99_ms']}" if extra else ""
        rows.append(f"| {name} | {x['rate']} | {x['achieved_rps']} | {x['errors']} | {x['p50_ms']} | "
                    f"{x['p95_ms']} | {x['p99_ms']} | {x['max_ms']} | {over} |")
    lines = ["# Benchmark results", "", f"Machine: {os.cpu_count()} CPUs; duration {r['seconds']} s a run.", ""]
    lines += rows + ["", "| service | CPU (cores) at the chat run | resident memory MB |", "|---|---|---|"]
    lines += [f"| {n} | {v['cpu_cores']} | {v['rss_mb']} |" for n, v in r["resources"].items()]
    machine = r["machine_cpu_cores"]
    lines += ["", "The whole machine during the chat run (cores): " + ", ".join(
        f"{n} {v}" for n, v in machine.items()) + f"; total {round(sum(machine.values()), 2)} "
        f"of {os.cpu_count()}"]
    lines += ["", "OpenAI-compatible route: overhead p50 minus the native route's: "
              f"{r['openai']['overhead_minus_chat_p50_ms']} ms"]
    ttft = r["stream"].get("first_token_overhead")
    lines += ["", "Streaming time-to-first-token overhead (first byte through the gateway minus first byte "
              f"from the simulator alone, and the gateway's own histogram as bucket bounds): {ttft}", "",
              "| search rate/s | sustained, no errors | p99 overhead under 10 ms | errors | achieved/s | p99 ms "
              "| p99 overhead ms |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {s['rate']} | {s['sustained']} | {s['passed']} | {s['errors']} | {s['achieved_rps']} | "
              f"{s['p99_ms']} | {s['overhead']['p99_ms']} |" for s in r["search"]]
    lines += ["", f"Highest rate with no errors and p99 overhead under 10 ms: "
                  f"{r['max_rate_no_errors_p99_overhead_under_10ms']} messages/s",
              f"Highest rate sustained with no errors: {r['max_rate_sustained_no_errors']} messages/s"]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="release")
    parser.add_argument("--out", default=str(ROOT / "target" / "bench"))
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--health-rate", type=int, default=5000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--search", type=lambda s: [int(x) for x in s.split(",") if x],
                        default=[250, 500, 1000, 1500, 2000, 2500, 3000, 4000, 5000])
    parser.add_argument("--search-seconds", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=3,
                        help="seconds at the same rate before every measured run, discarded")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for the services (experiments)")
    args = parser.parse_args()
    WARMUP["seconds"] = args.warmup
    if not shutil.which("oha"):
        raise SystemExit("bench: oha is not installed (scripts/bench.sh installs it)")
    stack = Stack(args.profile, args.env)
    try:
        print("bench: starting the stack", flush=True)
        stack.start()
        if stack.api_key:
            AUTH["header"] = f"Authorization: Bearer {stack.api_key}"
        print(f"bench: measuring at {args.rate}/s for {args.seconds} s a run", flush=True)
        results = measure(stack, args)
    finally:
        stack.stop()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(markdown(results))
    sys.stdout.write(markdown(results))
    print(f"bench: wrote {out / 'results.json'} and {out / 'results.md'}")


if __name__ == "__main__":
    main()
