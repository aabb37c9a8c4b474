#!/usr/bin/env python3
"""Benchmarks local-llm with the real model on this machine: generation speed
(tokens per second), time to the first token for a 50-token prompt, and
resident memory, for each count of generation threads asked for (the
prompt is read with local-llm's default: all cores). Prints a table and writes
local-llm.json into --out.

  python3 scripts/bench-local-llm.py                    # release build, 1 and 2 threads
  python3 scripts/bench-local-llm.py --threads 1 --runs 3 --profile debug

Each run is one request at a time (the service runs one generation at a
time): a streamed /api/generate of a ~50-token prompt, greedy, 128 tokens.
The time to the first token is measured by the client (request sent to the
first NDJSON line read); tokens per second is eval_count / eval_duration as
the service reports them; memory is the process's peak RSS (VmHWM).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL = "smollm2:135m"
# About 50 tokens once in the chat template.
PROMPT = (
    "I am planning a weekend trip to Paris with two friends. We arrive on "
    "Friday evening and leave on Sunday night. We like museums, good food "
    "and long walks. What three things should we do there?"
)


def model_file():
    out = subprocess.run(
        ["bash", str(ROOT / "scripts/fetch-model.sh")], check=True, capture_output=True, text=True
    )
    return out.stdout.strip().splitlines()[-1]


def start(binary, model, threads):
    proc = subprocess.Popen(
        [binary],
        env={
            **os.environ,
            "LOCAL_LLM_PORT": "0",
            "LOCAL_LLM_MODEL": model,
            "LOCAL_LLM_THREADS": str(threads),
            "LOCAL_LLM_LOG_FORMAT": "json",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    for line in proc.stdout:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("message") == "listening" and "addr" in entry:
            return proc, f"http://{entry['addr']}"
    proc.kill()
    sys.exit(f"local-llm did not start (exit {proc.wait()})")


def one_run(url):
    body = json.dumps(
        {
            "model": MODEL,
            "prompt": PROMPT,
            "options": {"temperature": 0, "num_predict": 128},
        }
    ).encode()
    req = urllib.request.Request(f"{url}/api/generate", data=body, method="POST")
    sent = time.perf_counter()
    first = None
    last = None
    with urllib.request.urlopen(req, timeout=120) as resp:
        for line in resp:
            if first is None:
                first = time.perf_counter() - sent
            last = json.loads(line)
    return {
        "first_token_ms": first * 1000,
        "tokens_per_sec": last["eval_count"] / (last["eval_duration"] / 1e9),
        "prompt_tokens": last["prompt_eval_count"],
        "prompt_eval_ms": last["prompt_eval_duration"] / 1e6,
        "tokens": last["eval_count"],
    }


def peak_rss_mb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", default="1,2", help="thread counts, comma-separated")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--profile", default="release")
    ap.add_argument("--binary", help="the local-llm binary (default: target/<profile>/local-llm)")
    ap.add_argument("--out", default=str(ROOT / "target/bench"), help="directory for local-llm.json")
    args = ap.parse_args()
    binary = args.binary or str(ROOT / "target" / args.profile / "local-llm")
    model = model_file()
    results = []
    for threads in [int(t) for t in args.threads.split(",")]:
        proc, url = start(binary, model, threads)
        try:
            one_run(url)  # warm-up: caches, first allocation of the context
            runs = [one_run(url) for _ in range(args.runs)]
            rss = peak_rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait()
        med = lambda k: statistics.median(r[k] for r in runs)  # noqa: E731
        spread = lambda k: (min(r[k] for r in runs), max(r[k] for r in runs))  # noqa: E731
        results.append(
            {
                "threads": threads,
                "runs": runs,
                "tokens_per_sec_median": med("tokens_per_sec"),
                "tokens_per_sec_spread": spread("tokens_per_sec"),
                "first_token_ms_median": med("first_token_ms"),
                "first_token_ms_spread": spread("first_token_ms"),
                "prompt_tokens": runs[0]["prompt_tokens"],
                "peak_rss_mb": rss,
            }
        )
    print(f"{'threads':>7} {'tokens/s (min-max)':>22} {'first token ms (min-max)':>26} {'prompt':>6} {'peak RSS MB':>11}")
    for r in results:
        lo, hi = r["tokens_per_sec_spread"]
        flo, fhi = r["first_token_ms_spread"]
        print(
            f"{r['threads']:>7} {r['tokens_per_sec_median']:>8.1f} ({lo:.1f}-{hi:.1f})"
            f" {r['first_token_ms_median']:>10.0f} ({flo:.0f}-{fhi:.0f})"
            f" {r['prompt_tokens']:>6} {r['peak_rss_mb']:>11.0f}"
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "local-llm.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
