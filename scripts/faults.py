#!/usr/bin/env python3
"""Fault suite: load through the gateway while dependencies fail, one after
the other, then every answered exchange counted in PostgreSQL.

Starts the stack as scripts/bench.py does (throwaway PostgreSQL and Redis,
the four services, auth on) with two Ollama simulators as `ollama.urls`, and
drives POST /api/chat at a constant rate in each phase:

  baseline            nothing fails
  redis down          Redis killed for the middle of the phase, then back
  postgres down       PostgreSQL stopped for the middle of the phase
  postgres down, kill -9 chat
                      PostgreSQL stopped, chat killed with SIGKILL and
                      started again while it is still down, then PostgreSQL back
  one backend down    the second simulator stopped
  all backends hanging
                      both simulators hang: after the breaker opens, failures
                      must be answered within 50 ms
  slow bodies         clients that send half a body and stall, beside the load
  sigterm chat        chat stopped with SIGTERM under load, then started again

A table per phase: sent, answered (2xx), errors by code, p50/p99 of answers
and of failures, and at the end rows stored versus accepted, lost. Exits 1 if
any accepted exchange is lost, any answer is a 500, or a failure took 50 ms
(--max-breaker-ms) or more at p99 while the breaker was open.

  python3 scripts/faults.py --profile release --rate 200 --seconds 20   # full size, by hand
  python3 scripts/faults.py --profile debug --rate 20 --seconds 6 --max-breaker-ms 500   # what the test suite runs

Python 3 standard library only.
"""

import argparse
import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (the stack and its processes)


class Load:
    """Requests at a constant rate from a thread pool; every outcome kept."""

    def __init__(self, url, key):
        self.url, self.key = url, key
        self.results = []
        self.lock = threading.Lock()

    def one(self, phase, i):
        user = "fault-" + "".join(c if c.isalnum() else "-" for c in phase)
        body = json.dumps({"user_id": user, "message": f"{phase} {i}"}).encode()
        request = urllib.request.Request(self.url, data=body, method="POST", headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {self.key}"})
        started = time.monotonic()
        status, code, message_id = 0, "transport", None
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status = response.status
                message_id = json.loads(response.read())["message_id"]
                code = "ok"
        except urllib.error.HTTPError as error:
            status = error.code
            try:
                code = json.loads(error.read())["error"]["code"]
            except (ValueError, KeyError, TypeError):
                code = f"status {error.code}"
        except OSError:
            pass
        outcome = {"phase": phase, "status": status, "code": code, "id": message_id,
                   "ms": (time.monotonic() - started) * 1000, "at": started}
        with self.lock:
            self.results.append(outcome)

    def run(self, phase, rate, seconds, during=None):
        """Sends for `seconds` at `rate`; `during(elapsed)` is called about
        every 100 ms from this thread (to inject and heal faults)."""
        interval = 1.0 / rate
        with concurrent.futures.ThreadPoolExecutor(max_workers=128) as pool:
            start = time.monotonic()
            sent, next_tick = 0, start
            while time.monotonic() - start < seconds:
                now = time.monotonic()
                if during and now >= next_tick:
                    during(now - start)
                    next_tick = now + 0.1
                due = int((now - start) / interval)
                while sent < due:
                    pool.submit(self.one, phase, sent)
                    sent += 1
                time.sleep(min(interval, 0.01))
            if during:
                during(seconds)


def pct(values, q):
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))], 1)


class Faults:
    def __init__(self, stack, sim2, args):
        self.stack, self.sim2, self.args = stack, sim2, args
        self.load = None
        self.done = set()
        self.breaker_open_at = None

    def once(self, name, action):
        """Runs `action` the first time `name` is asked for."""
        if name not in self.done:
            self.done.add(name)
            action()

    def phase(self, name, during=None):
        print(f"faults: {name}", flush=True)
        self.load.run(name, self.args.rate, self.args.seconds, during)
        time.sleep(1)

    def sim_config(self, url, **change):
        request = urllib.request.Request(url + "/_sim/config", data=json.dumps(change).encode(), method="PUT",
                                         headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=5).read()

    def restart(self, name):
        env = self.stack._service_env()
        self.stack._spawn(name, [str(self.stack.bin / name)], env)
        bench.wait_http(self.stack.url(name) + "/livez")

    def run_all(self):
        s, third = self.stack, self.args.seconds / 3
        self.load = Load(s.url("gateway") + "/api/chat", s.api_key)
        self.phase("baseline")

        redis = s.procs["redis"]
        def redis_down(t):
            if t >= third:
                self.once("redis stop", lambda: redis.kill())
            if t >= 2 * third:
                self.once("redis start", lambda: s._spawn("redis", redis.args, {}))
        self.phase("redis down", redis_down)

        def pg_down(t):
            if t >= third:
                self.once("pg stop", lambda: subprocess.run(s.stop_pg, capture_output=True))
            if t >= 2 * third:
                self.once("pg start", lambda: subprocess.run(s.start_pg, capture_output=True))
        self.phase("postgres down", pg_down)

        def pg_down_kill(t):
            if t >= 0.25 * self.args.seconds:
                self.once("pg stop 2", lambda: subprocess.run(s.stop_pg, capture_output=True))
            if t >= 0.5 * self.args.seconds:
                def kill_and_restart():
                    os.kill(s.pid("chat"), signal.SIGKILL)
                    s.procs["chat"].wait()
                    self.restart("chat")
                self.once("kill chat", kill_and_restart)
            if t >= 0.75 * self.args.seconds:
                self.once("pg start 2", lambda: subprocess.run(s.start_pg, capture_output=True))
        self.phase("postgres down, kill -9 chat", pg_down_kill)

        sim2 = self.sim2
        self.phase("one backend down", lambda t: self.once("sim2 stop", sim2.kill))

        # Back to one healthy and one hanging backend... then both hanging.
        def hang(t):
            self.once("hang", lambda: self.sim_config(s.url("sim"), hang=True))
        self.phase("all backends hanging", hang)
        self.sim_config(s.url("sim"), hang=False)
        # The breaker lets a probe through after its cool-down (5 s).
        time.sleep(6)

        self.slow = []
        def stalled_client():
            """Sends half a body and stalls; records the answer's status
            line and when it came."""
            with socket.create_connection(("127.0.0.1", s.ports["gateway"])) as sock:
                sock.sendall(b"POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             b"Authorization: Bearer " + s.api_key.encode() +
                             b"\r\nContent-Length: 200\r\n\r\n{\"user_id\":")
                opened = time.monotonic()
                sock.settimeout(30)
                try:
                    answer = sock.recv(64).decode(errors="replace")
                except OSError:
                    answer = ""
                self.slow.append((answer.split("\r\n")[0], round(time.monotonic() - opened, 1)))
        stalled = [threading.Thread(target=stalled_client) for _ in range(20)]
        self.phase("slow bodies", lambda t: self.once("stall", lambda: [c.start() for c in stalled]))
        for client in stalled:
            client.join()

        def sigterm(t):
            if t >= third:
                def stop_and_restart():
                    os.kill(s.pid("chat"), signal.SIGTERM)
                    s.procs["chat"].wait(timeout=60)
                    self.restart("chat")
                self.once("sigterm", stop_and_restart)
        self.phase("sigterm chat", sigterm)

    def report(self):
        results = self.load.results
        rows = ["| phase | sent | answered | errors by code | answer p50 / p99 ms | failure p50 / p99 ms |",
                "|---|---|---|---|---|---|"]
        phases = []
        for r in results:
            if r["phase"] not in phases:
                phases.append(r["phase"])
        problems = []
        for phase in phases:
            mine = [r for r in results if r["phase"] == phase]
            ok = [r["ms"] for r in mine if r["status"] == 200]
            failed = [r for r in mine if r["status"] != 200]
            codes = {}
            for r in failed:
                codes[r["code"]] = codes.get(r["code"], 0) + 1
            rows.append(f"| {phase} | {len(mine)} | {len(ok)} | {codes or '-'} | {pct(ok, 0.5)} / {pct(ok, 0.99)} "
                        f"| {pct([r['ms'] for r in failed], 0.5)} / {pct([r['ms'] for r in failed], 0.99)} |")
            if any(r["status"] == 500 for r in mine):
                problems.append(f"{phase}: a 500")
            if phase == "baseline" and len(ok) != len(mine):
                problems.append(f"baseline: {len(mine) - len(ok)} of {len(mine)} not answered")
        hanging = [r for r in results if r["phase"] == "all backends hanging" and r["code"] == "llm_unavailable"]
        fast = [r["ms"] for r in hanging]
        if fast and pct(fast, 0.99) >= self.args.max_breaker_ms:
            problems.append(f"all backends hanging: p99 of breaker answers {pct(fast, 0.99)} ms "
                            f"(limit {self.args.max_breaker_ms} ms)")
        if not fast:
            problems.append("all backends hanging: the breaker never answered")
        rows.append("")
        rows.append(f"all backends hanging: {len(fast)} answered by the open breaker, p50 {pct(fast, 0.5)} ms, "
                    f"p99 {pct(fast, 0.99)} ms, max {round(max(fast), 1) if fast else None} ms")
        one_down = [r for r in results if r["phase"] == "one backend down"]
        answered = sum(r["status"] == 200 for r in one_down)
        if one_down and answered < 0.999 * len(one_down):
            problems.append(f"one backend down: {answered} of {len(one_down)} answered")
        bad_slow = [s for s in self.slow if not s[0].startswith("HTTP/1.1 408")]
        if bad_slow:
            problems.append(f"slow bodies not cut off with 408: {bad_slow[:3]}")
        return rows, problems

    def count_rows(self):
        accepted = {r["id"] for r in self.load.results if r["id"]}
        deadline = time.time() + 120
        while True:
            psql = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1] / "psql"
            out = subprocess.run([str(psql), "-h", "127.0.0.1", "-p", str(self.stack.ports["pg"]), "-U", "postgres",
                                  "-d", "chatbot", "-At", "-c", "SELECT id FROM messages"],
                                 capture_output=True, text=True)
            stored = set(out.stdout.split())
            lost = accepted - stored
            if not lost or time.time() > deadline:
                return accepted, stored, lost
            time.sleep(1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="release")
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--max-breaker-ms", type=float, default=50,
                        help="the p99 the open breaker's answers must stay under")
    args = parser.parse_args()
    sim2_port = bench.free_port()
    stack = bench.Stack(args.profile, [
        "CHATBOT__CHAT__TIMEOUTS__FIRST_TOKEN_MS=1000",
        "CHATBOT__CHAT__TIMEOUTS__TOTAL_MS=5000",
    ])
    stack.extra_env["CHATBOT__OLLAMA__URLS"] = json.dumps([stack.url("sim"), f"http://127.0.0.1:{sim2_port}"])
    sim2 = subprocess.Popen([str(stack.bin / "ollama-sim")], env={**os.environ, "OLLAMA_SIM_PORT": str(sim2_port),
                                                                   "OLLAMA_SIM_LOG_LEVEL": "warn"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    faults = Faults(stack, sim2, args)
    try:
        bench.wait_http(f"http://127.0.0.1:{sim2_port}/api/version")
        stack.start()
        faults.run_all()
        accepted, stored, lost = faults.count_rows()
    finally:
        sim2.kill()
        stack.stop()
    rows, problems = faults.report()
    print("\n".join(rows))
    cut = [seconds for line, seconds in faults.slow if line.startswith("HTTP/1.1 408")]
    print(f"slow-body clients: {len(cut)} of {len(faults.slow)} cut off with 408, after {max(cut, default=None)} s")
    print(f"accepted (answered 2xx): {len(accepted)}; stored: {len(stored)}; lost: {len(lost)}")
    if lost:
        problems.append(f"{len(lost)} accepted exchanges lost")
    for p in problems:
        print(f"FAULT SUITE FAILED: {p}")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
