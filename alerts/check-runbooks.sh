#!/usr/bin/env bash
# Checks the alert rules in alerts/*.yml against docs/runbooks/:
#   - every alert has labels.severity (critical or warning) and the
#     annotations summary, description and runbook_url;
#   - every runbook_url ends in docs/runbooks/<file>.md (a path relative to
#     the repository root, or any URL whose path ends so, optionally with a
#     #fragment) and that file exists.
# Exits 1, naming each problem, if anything is wrong.
#
#   bash alerts/check-runbooks.sh
set -euo pipefail
cd "$(dirname "$0")/.."

shopt -s nullglob
files=(alerts/*.yml)
[ ${#files[@]} -gt 0 ] || { echo "check-runbooks: no alerts/*.yml" >&2; exit 1; }

status=0
alerts=0
urls=0

# One line per alert rule, fields separated by \x1f: file, alert name,
# severity, whether it has summary, description and runbook_url (3 digits),
# and the runbook_url. Block and flow style (`labels: {severity: x}`) both
# count.
report=$(awk '
  function flush() {
    if (name != "") printf "%s\037%s\037%s\037%d%d%d\037%s\n", file, name, sev, s, d, r, url
    name = ""; sev = ""; s = d = r = 0; url = ""
  }
  # The value of `key:` on this line, unquoted; in a flow mapping, up to the
  # next comma or closing brace.
  function value(line, key,    i, v, flow) {
    i = match(line, "(^|[{ ,\t])" key ":")
    if (!i) return ""
    flow = (substr(line, 1, RSTART) ~ /[{]/)
    v = substr(line, RSTART + RLENGTH)
    sub(/^[ \t]+/, "", v)
    if (flow) sub(/[,}].*$/, "", v)
    sub(/[ \t]+$/, "", v)
    gsub(/^["\047]|["\047]$/, "", v)
    return v
  }
  function has(line, key) { return line ~ ("(^|[{ ,\t])" key ":") }
  FNR == 1 { flush(); file = FILENAME }
  /^[ \t]*-[ \t]*(alert|record|name):/ { flush() }
  /^[ \t]*-[ \t]*alert:/ { name = value($0, "alert"); next }
  name != "" && has($0, "severity")    { sev = value($0, "severity") }
  name != "" && has($0, "summary")     { s = 1 }
  name != "" && has($0, "description") { d = 1 }
  name != "" && has($0, "runbook_url") { r = 1; url = value($0, "runbook_url") }
  END { flush() }
' "${files[@]}")

while IFS=$'\x1f' read -r file name sev has url; do
  [ -n "$file" ] || continue
  alerts=$((alerts + 1))
  where="$file: $name"
  case "$sev" in
    critical|warning) ;;
    *) echo "$where: severity is '${sev}', not critical or warning"; status=1 ;;
  esac
  [ "${has:0:1}" = 1 ] || { echo "$where: no summary annotation"; status=1; }
  [ "${has:1:1}" = 1 ] || { echo "$where: no description annotation"; status=1; }
  if [ "${has:2:1}" != 1 ]; then
    echo "$where: no runbook_url annotation"; status=1; continue
  fi
  urls=$((urls + 1))
  path=${url%%#*}; path=${path%%\?*}
  if [[ ! "$path" =~ (^|/)docs/runbooks/([^/]+\.md)$ ]]; then
    echo "$where: runbook_url '$url' does not end in docs/runbooks/<file>.md"; status=1; continue
  fi
  page="docs/runbooks/${BASH_REMATCH[2]}"
  if [ ! -f "$page" ]; then
    echo "$where: runbook_url '$url': $page does not exist"; status=1
  fi
done <<<"$report"

if [ "$alerts" -eq 0 ]; then
  echo "check-runbooks: no alert rules found in ${files[*]}"; exit 1
fi
if [ "$status" -eq 0 ]; then
  echo "check-runbooks: $alerts alert rules, $urls runbook URLs, every page exists"
fi
exit "$status"
