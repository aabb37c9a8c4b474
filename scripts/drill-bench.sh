#!/usr/bin/env bash
# Restore-drill benchmark (a measurement, not a test): a throwaway
# PostgreSQL on a free port of 127.0.0.1 with ROWS seeded messages
# (scripts/seed-messages.sql), then `chatbot-ops drill` timed; prints the
# time, the backup's share of it and the dump's size. Nothing already
# running on this machine is used; everything is removed at the end.
#   bash scripts/drill-bench.sh                # 1,000,000 messages, release build
#   bash scripts/drill-bench.sh 200000         # fewer rows
#   PROFILE=debug bash scripts/drill-bench.sh  # the debug binaries
#   WITH_S3=1 bash scripts/drill-bench.sh      # also upload to (and restore from) moto
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-1000000}
profile=${PROFILE:-release}
# shellcheck disable=SC1091
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

say() { printf '==> %s\n' "$*" >&2; }

if [ "$profile" = release ]; then
  say "Building chatbot-ops and chat (release)"
  cargo build --locked --release -p chatbot-ops -p chat --bins
  bin=target/release
else
  cargo build --locked -p chatbot-ops -p chat --bins
  bin=target/debug
fi

pgbin=$(pg_config --bindir 2>/dev/null || true)
if [ ! -x "$pgbin/initdb" ]; then
  pgbin=$(find /usr/lib/postgresql -path '*/bin/initdb' | sort -V | tail -1 | xargs dirname)
fi
work=$(mktemp -d /tmp/drill-bench.XXXXXX)
chmod 755 "$work"
as_pg=()
if [ "$(id -u)" = 0 ]; then
  chown postgres: "$work"
  as_pg=(runuser -u postgres --)
fi
moto_pid=
# shellcheck disable=SC2317 # run by the trap
cleanup() {
  "${as_pg[@]}" "$pgbin/pg_ctl" stop -m immediate -D "$work/data" >/dev/null 2>&1 || true
  if [ -n "$moto_pid" ]; then kill "$moto_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

port=$(free_port)
say "PostgreSQL $("$pgbin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port ($work)"
"${as_pg[@]}" "$pgbin/initdb" -D "$work/data" --auth=trust -U postgres -E UTF8 --locale=C >/dev/null
"${as_pg[@]}" "$pgbin/pg_ctl" start -w -D "$work/data" -l "$work/postgres.log" \
  -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$work" >/dev/null
url="postgres://postgres@127.0.0.1:$port/chatbot"
psql=("$pgbin/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres)
"${psql[@]}" -d postgres -c 'CREATE DATABASE chatbot'
CHATBOT_CONFIG_DIR=config CHATBOT__DATABASE__URL=$url "$bin/chat" migrate >/dev/null

say "Seeding $rows messages"
seed_start=$(date +%s.%N)
"${psql[@]}" -d chatbot -v rows="$rows" -f scripts/seed-messages.sql
"${psql[@]}" -d chatbot -c 'VACUUM ANALYZE messages'
seed_end=$(date +%s.%N)
db_size=$("${psql[@]}" -d chatbot -At -c "SELECT pg_size_pretty(pg_database_size('chatbot'))")

env=(CHATBOT_CONFIG_DIR=config CHATBOT__DATABASE__URL="$url"
  CHATBOT__OPS__BACKUP__DIR="$work/backups" CHATBOT__OPS__BACKUP__CONFIG_DIR=config)
if [ -n "${WITH_S3:-}" ]; then
  s3_port=$(free_port)
  .venv/bin/moto_server -H 127.0.0.1 -p "$s3_port" >/dev/null 2>&1 &
  moto_pid=$!
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$s3_port/" >/dev/null && break; sleep 0.2; done
  curl -fs -X PUT "http://127.0.0.1:$s3_port/chatbot-backups" >/dev/null
  env+=(CHATBOT__OPS__BACKUP__S3__BUCKET=chatbot-backups
    CHATBOT__OPS__BACKUP__S3__ENDPOINT="http://127.0.0.1:$s3_port"
    AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing)
fi

say "chatbot-ops drill"
start=$(date +%s.%N)
status=0
env "${env[@]}" "$bin/chatbot-ops" drill --json >"$work/drill.json" || status=$?
end=$(date +%s.%N)
if [ ! -s "$work/drill.json" ]; then
  echo "drill failed (exit $status) after $(echo "$end - $start" | bc) s" >&2
  exit "$status"
fi
python3 - "$work/drill.json" "$rows" "$db_size" "$seed_start" "$seed_end" "$start" "$end" "$status" <<'EOF'
import datetime, json, sys
path, rows, db_size, seed_start, seed_end, start, end, status = sys.argv[1:]
report = json.load(open(path))
manifest = report["backup"]["manifest"]
parse = lambda t: datetime.datetime.fromisoformat(t.replace("Z", "+00:00"))
backup = (parse(manifest["finished"]) - parse(manifest["started"])).total_seconds()
dump = next(f["size"] for f in manifest["files"] if f["name"] == "database.dump")
print(f"rows:            {int(rows):,} messages ({db_size} database)")
print(f"seeding:         {float(seed_end) - float(seed_start):.1f} s")
print(f"drill:           {float(end) - float(start):.1f} s (exit {status})")
print(f"  backup:        {backup:.1f} s (pg_dump -Fc with row checksums, archives, manifest)")
print(f"  restore+check: {float(end) - float(start) - backup:.1f} s (scratch database, pg_restore, comparison)")
print(f"dump size:       {dump / 1024 / 1024:.1f} MiB ({dump:,} bytes)")
for table in report["tables"]:
    print(f"  {table['table']}: {table['restored_rows']} rows, {table['status']}")
EOF
exit "$status"
