#!/usr/bin/env python3
"""Median and spread of several benchmark runs (scripts/bench.sh --out DIR).

    python3 scripts/bench-summary.py target/bench/run-1 target/bench/run-2 ...

Prints, for each headline figure, the median over the runs and the lowest
and highest value: the form the README and docs/performance.md quote.
"""

import json
import statistics
import sys
from pathlib import Path

FIGURES = [
    ("floor p50 ms", lambda r: r["floor"]["p50_ms"]),
    ("chat p50 ms", lambda r: r["chat"]["p50_ms"]),
    ("chat p99 ms", lambda r: r["chat"]["p99_ms"]),
    ("overhead p50 ms at the rate", lambda r: r["chat"]["overhead"]["p50_ms"]),
    ("overhead p99 ms at the rate", lambda r: r["chat"]["overhead"]["p99_ms"]),
    ("openai route overhead p50 ms", lambda r: r["openai"]["overhead"]["p50_ms"] if "openai" in r else float("nan")),
    ("openai minus native overhead p50 ms",
     lambda r: r["openai"]["overhead_minus_chat_p50_ms"] if "openai" in r else float("nan")),
    ("first-token overhead p50 ms", lambda r: r["stream"]["first_token_overhead"]["p50_ms"]),
    ("health p99 ms", lambda r: r["health"]["p99_ms"]),
    ("chat CPU cores", lambda r: r["resources"]["chat"]["cpu_cores"]),
    ("gateway CPU cores", lambda r: r["resources"]["gateway"]["cpu_cores"]),
    ("machine CPU cores", lambda r: round(sum(r["machine_cpu_cores"].values()), 3)),
    ("largest service RSS MB", lambda r: max(s["rss_mb"] for s in r["resources"].values())),
    ("highest rate, p99 overhead < 10 ms", lambda r: r["max_rate_no_errors_p99_overhead_under_10ms"] or 0),
    ("highest rate with no errors", lambda r: r["max_rate_sustained_no_errors"] or 0),
]


def main(dirs):
    runs = [json.loads((Path(d) / "results.json").read_text()) for d in dirs]
    print(f"{len(runs)} runs: {', '.join(dirs)}")
    print("| figure | median | lowest | highest |")
    print("|---|---|---|---|")
    for name, get in FIGURES:
        values = [get(r) for r in runs]
        print(f"| {name} | {statistics.median(values):g} | {min(values):g} | {max(values):g} |")


if __name__ == "__main__":
    main(sys.argv[1:])
