#!/usr/bin/env python3
"""Checks the Grafana dashboards in this folder (Python 3 standard library only).

    python3 dashboards/check.py                   # validate every dashboard
    python3 dashboards/check.py --print-queries   # validate, then print every query, one a line
    python3 dashboards/check.py --prometheus http://127.0.0.1:9090 [--require-data]
                                                  # also evaluate every query there

Every dashboard must parse, have a `datasource` variable (type `datasource`,
query `prometheus`), `"id": null`, a stable `uid` unique across the folder and
tags; every panel a unique id, a modern type, a non-overlapping `gridPos`, a
unit (`fieldConfig.defaults.unit`) and the datasource `${datasource}`; every
target that datasource and an `expr` using no template variable but
`$__rate_interval`, `$__interval`, `$__range`, `$datasource` and the
dashboard's own variables.

With --print-queries, the queries are printed with the variables replaced so
that Prometheus can evaluate them as they are: `$__rate_interval` and
`$__interval` by `1m`, `$__range` by `1h`, `$service` by `.*` (what "All"
means), `$datasource` removed. Nothing else is written to stdout then; problems
go to stderr and the exit code is 1.

With --prometheus URL, every query is evaluated at URL (`/api/v1/query`): an
error fails the check; with --require-data, so does an empty result.
"""

import argparse
import json
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATASOURCE_REF = {"type": "prometheus", "uid": "${datasource}"}
MODERN_TYPES = {"timeseries", "stat", "gauge", "bargauge", "table", "state-timeline", "piechart"}
GRID_WIDTH = 24
# Grafana unit ids these dashboards may use (a typo shows raw numbers without
# a word of warning in Grafana); custom units are `suffix:`, `prefix:`, `si:`,
# `count:` or `time:` followed by the text. Add an id here when needed.
KNOWN_UNITS = {
    "none", "short", "percent", "percentunit", "bool", "bool_on_off", "bool_yes_no",
    "s", "ms", "µs", "ns", "m", "h", "d", "dtdurations", "dtdurationms",
    "bytes", "decbytes", "bits", "kbytes", "mbytes", "gbytes",
    "Bps", "binBps", "bps", "binbps",
    "cps", "ops", "reqps", "rps", "wps", "iops", "cpm", "opm", "reqpm", "rpm", "wpm",
}
CUSTOM_UNIT = re.compile(r"(suffix|prefix|si|count|time):.+")

# What each variable becomes for an evaluation outside Grafana.
SUBSTITUTIONS = {
    "__rate_interval": "1m",
    "__interval": "1m",
    "__range": "1h",
    "service": ".*",
    "datasource": "",
}
BUILTIN_VARIABLES = {"__rate_interval", "__interval", "__range"}
VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


def substitute(expr):
    """The query as Prometheus should evaluate it, on one line."""
    def repl(m):
        name = m.group(1) or m.group(2)
        return SUBSTITUTIONS.get(name, m.group(0))
    return " ".join(VARIABLE.sub(repl, expr).split())


def all_panels(panels):
    """Panels, including those nested in collapsed rows."""
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


class Checker:
    def __init__(self):
        self.problems = []
        self.uids = {}
        self.queries = []  # (file, panel title, refId, substituted expr)

    def fail(self, where, message):
        self.problems.append(f"{where}: {message}")

    def check_file(self, path):
        where = path.name
        try:
            dash = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            self.fail(where, f"does not parse: {e}")
            return
        if not isinstance(dash, dict):
            self.fail(where, "is not a JSON object")
            return
        uid = dash.get("uid")
        if not isinstance(uid, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", uid):
            self.fail(where, f"uid {uid!r} must be 1-40 letters, digits, '-' or '_'")
        elif uid in self.uids:
            self.fail(where, f"uid {uid!r} is also the uid of {self.uids[uid]}")
        else:
            self.uids[uid] = where
        if "id" not in dash or dash["id"] is not None:
            self.fail(where, '"id" must be null (Grafana assigns it)')
        if not dash.get("title"):
            self.fail(where, "has no title")
        if not dash.get("tags"):
            self.fail(where, "has no tags")
        if not isinstance(dash.get("schemaVersion"), int) or dash["schemaVersion"] < 36:
            self.fail(where, "schemaVersion must be 36 or later")
        variables = self.check_variables(where, dash)
        panels = list(all_panels(dash.get("panels", [])))
        if not panels:
            self.fail(where, "has no panel")
        ids = set()
        cells = {}
        for panel in panels:
            self.check_panel(where, panel, ids, cells, variables)

    def check_variables(self, where, dash):
        variables = dash.get("templating", {}).get("list", [])
        names = {v.get("name") for v in variables}
        ds = [v for v in variables if v.get("name") == "datasource"]
        if not ds:
            self.fail(where, "has no `datasource` variable")
        elif ds[0].get("type") != "datasource" or ds[0].get("query") != "prometheus":
            self.fail(where, "the `datasource` variable must be of type `datasource` with query `prometheus`")
        for v in variables:
            if v.get("type") == "query" and v.get("datasource") != DATASOURCE_REF:
                self.fail(where, f"variable {v.get('name')!r} must use the datasource ${{datasource}}")
            if v.get("name") not in SUBSTITUTIONS:
                self.fail(where, f"variable {v.get('name')!r} has no substitution in check.py (add one)")
        return names

    def check_panel(self, where, panel, ids, cells, variables):
        title = panel.get("title") or "(untitled)"
        here = f"{where}: panel {panel.get('id')} {title!r}"
        if panel.get("type") == "row":
            return
        if not panel.get("title"):
            self.fail(here, "has no title")
        pid = panel.get("id")
        if not isinstance(pid, int):
            self.fail(here, "id must be an integer")
        elif pid in ids:
            self.fail(here, "id is used twice")
        ids.add(pid)
        if panel.get("type") not in MODERN_TYPES:
            self.fail(here, f"type {panel.get('type')!r} is not one of {sorted(MODERN_TYPES)}")
        self.check_grid(here, panel.get("gridPos"), cells)
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
        if not isinstance(unit, str) or not unit.strip():
            self.fail(here, "has no unit (fieldConfig.defaults.unit)")
        elif unit not in KNOWN_UNITS and not CUSTOM_UNIT.fullmatch(unit):
            self.fail(here, f"unit {unit!r} is not a Grafana unit id known to check.py")
        if panel.get("datasource") != DATASOURCE_REF:
            self.fail(here, f"datasource must be {DATASOURCE_REF}")
        targets = panel.get("targets") or []
        if not targets:
            self.fail(here, "has no target")
        refs = set()
        for t in targets:
            ref = t.get("refId")
            if not ref or ref in refs:
                self.fail(here, f"target refId {ref!r} is missing or repeated")
            refs.add(ref)
            if t.get("datasource") != DATASOURCE_REF:
                self.fail(here, f"target {ref} datasource must be {DATASOURCE_REF}")
            expr = t.get("expr")
            if not isinstance(expr, str) or not expr.strip():
                self.fail(here, f"target {ref} has no expr")
                continue
            for m in VARIABLE.finditer(expr):
                name = m.group(1) or m.group(2)
                if name not in BUILTIN_VARIABLES and name not in variables:
                    self.fail(here, f"target {ref} uses ${name}, which the dashboard does not define")
                elif name not in SUBSTITUTIONS:
                    self.fail(here, f"target {ref} uses ${name}, which check.py cannot substitute")
            if expr.count("(") != expr.count(")") or expr.count("{") != expr.count("}"):
                self.fail(here, f"target {ref} has unbalanced brackets")
            self.queries.append((where, title, ref, substitute(expr)))

    def check_grid(self, here, grid, cells):
        if not isinstance(grid, dict) or not all(isinstance(grid.get(k), int) for k in "xywh"):
            self.fail(here, "gridPos needs integer x, y, w and h")
            return
        x, y, w, h = grid["x"], grid["y"], grid["w"], grid["h"]
        if x < 0 or y < 0 or w <= 0 or h <= 0 or x + w > GRID_WIDTH:
            self.fail(here, f"gridPos {grid} is outside the {GRID_WIDTH}-column grid")
            return
        for cx in range(x, x + w):
            for cy in range(y, y + h):
                if (cx, cy) in cells:
                    self.fail(here, f"gridPos overlaps {cells[(cx, cy)]}")
                    return
        for cx in range(x, x + w):
            for cy in range(y, y + h):
                cells[(cx, cy)] = here

    def check_provisioning(self):
        """The dashboards' default datasource must be the provisioned one."""
        path = HERE.parent / "deploy/grafana/provisioning/datasources/prometheus.yml"
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            self.fail(str(path), f"cannot be read: {e}")
            return
        if not re.search(r"^\s*uid:\s*['\"]?prometheus['\"]?\s*$", text, re.M):
            self.fail(path.name, "does not provision a datasource with uid `prometheus`")

    def evaluate(self, base, require_data):
        url = base.rstrip("/") + "/api/v1/query"
        for where, title, ref, query in self.queries:
            here = f"{where}: {title!r} {ref}"
            data = urllib.parse.urlencode({"query": query}).encode()
            try:
                with urllib.request.urlopen(url, data=data, timeout=30) as r:
                    body = json.load(r)
            except urllib.error.HTTPError as e:
                try:
                    body = json.load(e)
                except ValueError:
                    body = {"status": "error", "error": f"HTTP {e.code}"}
            except (OSError, ValueError) as e:
                self.fail(here, f"cannot query {url}: {e}")
                continue
            if body.get("status") != "success":
                self.fail(here, f"{body.get('errorType', '')} {body.get('error')}: {query}")
            elif require_data and not body["data"]["result"]:
                self.fail(here, f"returns no data: {query}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--print-queries", action="store_true",
                        help="print every query, variables substituted, one a line")
    parser.add_argument("--prometheus", metavar="URL", help="evaluate every query at this Prometheus")
    parser.add_argument("--require-data", action="store_true",
                        help="with --prometheus: an empty result is a failure too")
    parser.add_argument("files", nargs="*", type=Path,
                        help="dashboards to check (default: every *.json next to this script)")
    args = parser.parse_args()
    files = args.files or sorted(HERE.glob("*.json"))
    checker = Checker()
    if not files:
        checker.fail(str(HERE), "holds no dashboard")
    for path in files:
        checker.check_file(path)
    checker.check_provisioning()
    if args.prometheus:
        checker.evaluate(args.prometheus, args.require_data)
    for problem in checker.problems:
        print(problem, file=sys.stderr)
    if args.print_queries:
        for _, _, _, query in checker.queries:
            print(query)
    elif not checker.problems:
        n = len(checker.queries)
        what = f"{len(files)} dashboards, {n} queries"
        if args.prometheus:
            what += f", every query evaluated at {args.prometheus}"
            what += " and returning data" if args.require_data else ""
        print(f"ok: {what}")
    return 1 if checker.problems else 0


if __name__ == "__main__":
    sys.exit(main())
