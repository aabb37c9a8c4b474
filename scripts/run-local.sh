#!/usr/bin/env bash
# Runs the whole stack on this machine and shows a chat through the gateway
# (README command 1).
#
#   bash scripts/run-local.sh              # set up, start everything, chat twice
#   bash scripts/run-local.sh --simulator  # the same with the Ollama simulator as the LLM
#   bash scripts/run-local.sh stop         # stop everything it started
#   bash scripts/run-local.sh status       # what is running
#
# It starts its own PostgreSQL and Redis on their own ports (never the
# machine's 5432 or 6379), Prometheus, the four services, and uses a reachable
# Ollama, or else starts local-llm, a small real model (SmolLM2-135M-Instruct,
# fetched once by scripts/fetch-model.sh) served over Ollama's API, and says
# so. With --simulator it starts the Ollama simulator instead (replies that
# echo the message: fast and deterministic, what tests and benchmarks use).
# Everything can be moved with environment variables (defaults shown):
#   CHATBOT_STATE_DIR=/var/tmp/chatbot-local   data, logs and pid files
#   CHATBOT_PG_PORT=55432  CHATBOT_REDIS_PORT=56379  CHATBOT_PROMETHEUS_PORT=9090
#   CHATBOT_GATEWAY_PORT=3001 CHATBOT_CHAT_PORT=3002 CHATBOT_SESSION_PORT=3003
#   CHATBOT_AGGREGATOR_PORT=3004 CHATBOT_ALERTMANAGER_PORT=9093
#   CHATBOT_METRICS_PORTS="9101 9102 9103 9104"  the metrics listeners of gateway, chat, session, aggregator
#   CHATBOT_NODE_EXPORTER_PORT=9100 CHATBOT_PG_EXPORTER_PORT=9187
#   CHATBOT_REDIS_EXPORTER_PORT=9121
#   CHATBOT_OLLAMA_URL=http://127.0.0.1:11434   a real Ollama to use if it answers
#   CHATBOT_PROFILE=debug (or release)          which build to run
#   CHATBOT_SKIP_BUILD=1                        use the binaries already built
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

STATE=${CHATBOT_STATE_DIR:-/var/tmp/chatbot-local}
PG_PORT=${CHATBOT_PG_PORT:-55432}
REDIS_PORT=${CHATBOT_REDIS_PORT:-56379}
PROM_PORT=${CHATBOT_PROMETHEUS_PORT:-9090}
AM_PORT=${CHATBOT_ALERTMANAGER_PORT:-9093}
NODE_EXPORTER_PORT=${CHATBOT_NODE_EXPORTER_PORT:-9100}
PG_EXPORTER_PORT=${CHATBOT_PG_EXPORTER_PORT:-9187}
REDIS_EXPORTER_PORT=${CHATBOT_REDIS_EXPORTER_PORT:-9121}
GATEWAY_PORT=${CHATBOT_GATEWAY_PORT:-3001}
CHAT_PORT=${CHATBOT_CHAT_PORT:-3002}
SESSION_PORT=${CHATBOT_SESSION_PORT:-3003}
AGGREGATOR_PORT=${CHATBOT_AGGREGATOR_PORT:-3004}
read -r GATEWAY_METRICS CHAT_METRICS SESSION_METRICS AGGREGATOR_METRICS <<<"${CHATBOT_METRICS_PORTS:-9101 9102 9103 9104}"
OLLAMA_URL=${CHATBOT_OLLAMA_URL:-http://127.0.0.1:11434}
PROFILE=${CHATBOT_PROFILE:-debug}
MODEL=${CHATBOT__CHAT__MODEL:-llama3.2:1b}
LLM_CHOICE=auto
SERVICES=(session chat gateway health-aggregator)
MONITORS=(prometheus prometheus-alertmanager prometheus-node-exporter prometheus-postgres-exporter prometheus-redis-exporter)

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
fail() { printf '\033[31mrun-local: %s\033[0m\n' "$*" >&2; exit 1; }
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop_all() {
  for name in "${SERVICES[@]}" ollama-sim local-llm "${MONITORS[@]}"; do
    if pid_alive "$STATE/$name.pid"; then
      kill -TERM "$(cat "$STATE/$name.pid")" 2>/dev/null || true
      for _ in $(seq 50); do pid_alive "$STATE/$name.pid" || break; sleep 0.2; done
      echo "stopped $name"
    fi
    rm -f "$STATE/$name.pid"
  done
  if [ -f "$STATE/redis/redis.pid" ] && kill -0 "$(cat "$STATE/redis/redis.pid")" 2>/dev/null; then
    kill -TERM "$(cat "$STATE/redis/redis.pid")" && echo "stopped redis"
  fi
  if [ -f "$STATE/pg/data/postmaster.pid" ]; then
    as_postgres "$(pg_bin)/pg_ctl" -D "$STATE/pg/data" -m fast -w stop >/dev/null && echo "stopped postgresql"
  fi
}

status() {
  for name in "${SERVICES[@]}" ollama-sim local-llm "${MONITORS[@]}"; do
    if pid_alive "$STATE/$name.pid"; then echo "$name: running (pid $(cat "$STATE/$name.pid"))"; else echo "$name: stopped"; fi
  done
}

start_postgres() {
  local bin; bin=$(pg_bin)
  [ -n "$bin" ] || fail "PostgreSQL binaries not found; run scripts/setup.sh"
  mkdir -p "$STATE/pg"
  if [ "$(id -u)" = 0 ]; then chown postgres: "$STATE/pg"; fi
  if [ ! -f "$STATE/pg/data/PG_VERSION" ]; then
    say "Creating a PostgreSQL cluster in $STATE/pg"
    as_postgres "$bin/initdb" -D "$STATE/pg/data" -U postgres --auth=trust -E UTF8 >/dev/null
  fi
  if ! as_postgres "$bin/pg_ctl" -D "$STATE/pg/data" status >/dev/null 2>&1; then
    port_busy "$PG_PORT" && fail "port $PG_PORT is taken; set CHATBOT_PG_PORT"
    say "Starting PostgreSQL on 127.0.0.1:$PG_PORT"
    as_postgres "$bin/pg_ctl" -D "$STATE/pg/data" -l "$STATE/pg/server.log" -w \
      -o "-c listen_addresses=127.0.0.1 -c port=$PG_PORT -c unix_socket_directories=$STATE/pg" start >/dev/null
  fi
  local psql=("$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 -qtA)
  if [ -z "$("${psql[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname = 'chatbot'")" ]; then
    "${psql[@]}" -c "CREATE ROLE chatbot LOGIN PASSWORD 'chatbot'"
    "${psql[@]}" -c "GRANT pg_monitor TO chatbot"
  fi
  if [ -z "$("${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname = 'chatbot'")" ]; then
    "${psql[@]}" -c "CREATE DATABASE chatbot OWNER chatbot"
  fi
}

start_redis() {
  mkdir -p "$STATE/redis"
  if [ -f "$STATE/redis/redis.pid" ] && kill -0 "$(cat "$STATE/redis/redis.pid")" 2>/dev/null; then return; fi
  port_busy "$REDIS_PORT" && fail "port $REDIS_PORT is taken; set CHATBOT_REDIS_PORT"
  say "Starting Redis on 127.0.0.1:$REDIS_PORT"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$STATE/redis" --daemonize yes \
    --pidfile "$STATE/redis/redis.pid" --logfile "$STATE/redis/redis.log" --save 60 1 >/dev/null
  for _ in $(seq 50); do port_busy "$REDIS_PORT" && return; sleep 0.1; done
  fail "Redis did not start; see $STATE/redis/redis.log"
}

# Starts a binary in the background; its output goes to $STATE/logs/NAME.stdout
# (the services also write rotated NAME.log and NAME.error.log there).
launch() {
  local name=$1; shift
  pid_alive "$STATE/$name.pid" && return
  mkdir -p "$STATE/logs"
  nohup env "$@" "$ROOT/target/$PROFILE/$name" >>"$STATE/logs/$name.stdout" 2>&1 &
  echo $! >"$STATE/$name.pid"
}

choose_llm() {
  if curl -sf --max-time 3 "$OLLAMA_URL/api/version" >/dev/null; then
    say "Using the Ollama at $OLLAMA_URL"
    if ! curl -sf "$OLLAMA_URL/api/tags" | jq -e --arg m "$MODEL" \
        '.models[] | select(.name == $m or .name == ($m + ":latest"))' >/dev/null; then
      echo "warning: model '$MODEL' is not in that Ollama; run 'ollama pull $MODEL' or set CHATBOT__CHAT__MODEL" >&2
    fi
    LLM_URL=$OLLAMA_URL
    return
  fi
  local port=${OLLAMA_URL##*:}; port=${port%%/*}
  port_busy "$port" && port=11435
  LLM_URL="http://127.0.0.1:$port"
  if [ "$LLM_CHOICE" = simulator ]; then
    say "Starting the bundled Ollama simulator at $LLM_URL (--simulator)"
    echo "    (deterministic replies that echo your message; not a real model)"
    launch ollama-sim OLLAMA_SIM_PORT="$port" OLLAMA_SIM_TOKENS_PER_SEC=50 OLLAMA_SIM_FIRST_TOKEN_MS=100
    return
  fi
  local model_file
  model_file=$(bash scripts/fetch-model.sh) || fail "the local model could not be fetched; run with --simulator to use the simulator"
  say "No Ollama answers at $OLLAMA_URL: starting local-llm at $LLM_URL"
  echo "    (SmolLM2-135M-Instruct, a small real model on this machine's CPU: $model_file;"
  echo "     point CHATBOT_OLLAMA_URL at a real Ollama for production answers)"
  [ -z "${CHATBOT__CHAT__MODEL:-}" ] && MODEL=smollm2:135m
  launch local-llm LOCAL_LLM_PORT="$port" LOCAL_LLM_MODEL="$model_file" LOCAL_LLM_MODEL_NAME="$MODEL" \
    LOCAL_LLM_LOG_FORMAT=json
  wait_ready local-llm "$port"
}

start_services() {
  COMMON=(
    CHATBOT_CONFIG_DIR="$ROOT/config"
    CHATBOT__LOG__DIR="$STATE/logs"
    CHATBOT__GATEWAY__AGGREGATOR_URL="http://127.0.0.1:$AGGREGATOR_PORT"
    CHATBOT__DATABASE__URL="postgres://chatbot:chatbot@127.0.0.1:$PG_PORT/chatbot"
    CHATBOT__REDIS__URL="redis://127.0.0.1:$REDIS_PORT"
    CHATBOT__OLLAMA__URL="$LLM_URL"
    CHATBOT__CHAT__MODEL="$MODEL"
    CHATBOT__GATEWAY__SERVER__PORT="$GATEWAY_PORT"
    CHATBOT__CHAT__SERVER__PORT="$CHAT_PORT"
    CHATBOT__SESSION__SERVER__PORT="$SESSION_PORT"
    CHATBOT__AGGREGATOR__SERVER__PORT="$AGGREGATOR_PORT"
    CHATBOT__GATEWAY__CHAT_URL="http://127.0.0.1:$CHAT_PORT"
    CHATBOT__GATEWAY__SESSION_URL="http://127.0.0.1:$SESSION_PORT"
    CHATBOT__AGGREGATOR__SERVICES__GATEWAY="http://127.0.0.1:$GATEWAY_PORT"
    CHATBOT__AGGREGATOR__SERVICES__CHAT="http://127.0.0.1:$CHAT_PORT"
    CHATBOT__AGGREGATOR__SERVICES__SESSION="http://127.0.0.1:$SESSION_PORT"
    CHATBOT__GATEWAY__SERVER__METRICS_PORT="$GATEWAY_METRICS"
    CHATBOT__CHAT__SERVER__METRICS_PORT="$CHAT_METRICS"
    CHATBOT__SESSION__SERVER__METRICS_PORT="$SESSION_METRICS"
    CHATBOT__AGGREGATOR__SERVER__METRICS_PORT="$AGGREGATOR_METRICS"
    CHATBOT__AGGREGATOR__METRICS__GATEWAY="http://127.0.0.1:$GATEWAY_METRICS"
    CHATBOT__AGGREGATOR__METRICS__CHAT="http://127.0.0.1:$CHAT_METRICS"
    CHATBOT__AGGREGATOR__METRICS__SESSION="http://127.0.0.1:$SESSION_METRICS"
  )
  local -A ports=([session]=$SESSION_PORT [chat]=$CHAT_PORT [gateway]=$GATEWAY_PORT [health-aggregator]=$AGGREGATOR_PORT)
  for name in "${SERVICES[@]}"; do
    if ! pid_alive "$STATE/$name.pid" && port_busy "${ports[$name]}"; then
      fail "port ${ports[$name]} for $name is taken; stop what uses it or set its CHATBOT_*_PORT"
    fi
    say "Starting $name on 127.0.0.1:${ports[$name]}"
    launch "$name" "${COMMON[@]}"
    wait_ready "$name" "${ports[$name]}"
  done
}

wait_ready() {
  local name=$1 port=$2
  for _ in $(seq 120); do
    curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && return
    pid_alive "$STATE/$name.pid" || { tail -n 20 "$STATE/logs/$name.stdout" >&2; fail "$name exited"; }
    sleep 0.5
  done
  curl -s "http://127.0.0.1:$port/readyz" >&2 || true
  fail "$name is not ready after 60 s; see $STATE/logs/$name.stdout"
}

# Starts a monitoring program (Prometheus, Alertmanager, an exporter) unless
# it runs already or its port is taken.
monitor() {
  local name=$1 port=$2; shift 2
  pid_alive "$STATE/$name.pid" && return
  if port_busy "$port"; then echo "$name: port $port is taken; not starting it"; return; fi
  nohup env "$@" >>"$STATE/logs/$name.stdout" 2>&1 &
  echo $! >"$STATE/$name.pid"
}

start_monitoring() {
  mkdir -p "$STATE/prometheus" "$STATE/alertmanager"
  sed -e "s/127.0.0.1:3001/127.0.0.1:$GATEWAY_PORT/; s/127.0.0.1:3002/127.0.0.1:$CHAT_PORT/" \
      -e "s/127.0.0.1:3003/127.0.0.1:$SESSION_PORT/; s/127.0.0.1:3004/127.0.0.1:$AGGREGATOR_PORT/" \
      -e "s/127.0.0.1:9090/127.0.0.1:$PROM_PORT/; s/127.0.0.1:9093/127.0.0.1:$AM_PORT/" \
      -e "s/127.0.0.1:9100/127.0.0.1:$NODE_EXPORTER_PORT/; s/127.0.0.1:9187/127.0.0.1:$PG_EXPORTER_PORT/" \
      -e "s/127.0.0.1:9121/127.0.0.1:$REDIS_EXPORTER_PORT/; s#\.\./\.\./alerts/#$ROOT/alerts/#" \
      -e "s/127.0.0.1:9101/127.0.0.1:$GATEWAY_METRICS/; s/127.0.0.1:9102/127.0.0.1:$CHAT_METRICS/" \
      -e "s/127.0.0.1:9103/127.0.0.1:$SESSION_METRICS/; s/127.0.0.1:9104/127.0.0.1:$AGGREGATOR_METRICS/" \
      deploy/prometheus/prometheus.yml >"$STATE/prometheus/prometheus.yml"
  say "Starting Prometheus ($PROM_PORT), Alertmanager ($AM_PORT) and the node, PostgreSQL and Redis exporters"
  monitor prometheus-node-exporter "$NODE_EXPORTER_PORT" \
    prometheus-node-exporter --web.listen-address="127.0.0.1:$NODE_EXPORTER_PORT"
  monitor prometheus-postgres-exporter "$PG_EXPORTER_PORT" \
    DATA_SOURCE_NAME="postgresql://chatbot:chatbot@127.0.0.1:$PG_PORT/chatbot?sslmode=disable" \
    prometheus-postgres-exporter --web.listen-address="127.0.0.1:$PG_EXPORTER_PORT"
  monitor prometheus-redis-exporter "$REDIS_EXPORTER_PORT" \
    prometheus-redis-exporter --web.listen-address="127.0.0.1:$REDIS_EXPORTER_PORT" --redis.addr="redis://127.0.0.1:$REDIS_PORT"
  monitor prometheus-alertmanager "$AM_PORT" \
    prometheus-alertmanager --config.file="$ROOT/deploy/alertmanager/local.yml" \
    --storage.path="$STATE/alertmanager" --web.listen-address="127.0.0.1:$AM_PORT" --cluster.listen-address=
  monitor prometheus "$PROM_PORT" \
    prometheus --config.file="$STATE/prometheus/prometheus.yml" \
    --storage.tsdb.path="$STATE/prometheus/data" --web.listen-address="127.0.0.1:$PROM_PORT"
}

# The demo's API key: made once with chatbot-ops (keys are shown only when
# made), kept in $STATE/demo-api-key (mode 600) for the next runs.
demo_key() {
  local gw=$1 file="$STATE/demo-api-key"
  local probe="$gw/api/sessions/00000000-0000-0000-0000-000000000000"
  accepted() { [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $(cat "$file")" "$probe")" != 401 ]; }
  if [ -s "$file" ] && accepted; then return; fi
  say "Making the demo API key (chatbot-ops keys create --name demo)"
  env "${COMMON[@]}" "$ROOT/target/$PROFILE/chatbot-ops" keys revoke demo >/dev/null 2>&1 || true
  (umask 077; env "${COMMON[@]}" "$ROOT/target/$PROFILE/chatbot-ops" keys create --name demo --json | jq -r .key >"$file")
  for _ in $(seq 50); do accepted && return; sleep 0.2; done
  fail "the gateway does not accept the new key; see $STATE/logs/gateway.error.log"
}

demo() {
  local gw="http://127.0.0.1:$GATEWAY_PORT"
  demo_key "$gw"
  local key; key=$(cat "$STATE/demo-api-key")
  local auth=(-H "Authorization: Bearer $key")
  say "A chat through the gateway: POST $gw/api/chat (with the demo API key)"
  local first
  first=$(curl -sS -X POST "$gw/api/chat" "${auth[@]}" -H 'Content-Type: application/json' \
    -d '{"user_id": "demo-user", "message": "Hello! My name is Ada. How do I reset my password?"}')
  echo "$first" | jq .
  local sid; sid=$(echo "$first" | jq -r .session_id)
  [ "$sid" != "null" ] || fail "the chat failed: $first"
  say "A second message in the same session (its context holds the first)"
  curl -sS -X POST "$gw/api/chat" "${auth[@]}" -H 'Content-Type: application/json' \
    -d "{\"user_id\": \"demo-user\", \"message\": \"What is my name?\", \"session_id\": \"$sid\"}" | jq .
  say "The stored exchanges in PostgreSQL"
  "$(pg_bin)/psql" -h 127.0.0.1 -p "$PG_PORT" -U chatbot -d chatbot -c \
    "SELECT timestamp, user_id, type, urgency, response_time, left(reply, 50) AS reply FROM messages WHERE session_id = '$sid' ORDER BY timestamp"
  say "The health verdict: GET $gw/health"
  for _ in $(seq 50); do
    [ "$(curl -s "$gw/health" | jq -r .status)" = OK ] && break
    sleep 0.2
  done
  curl -s "$gw/health" | jq -c .
  say "Its details (on the aggregator's internal port; on the gateway, for admin API keys only)"
  curl -s "http://127.0.0.1:$AGGREGATOR_PORT/health" | jq -c '{status, services: (.services | map_values(.status))}'
  say "The stack is running"
  cat <<EOT
  API key      $key  (demo; also in $STATE/demo-api-key)
  gateway      $gw  (try: curl -s -H "Authorization: Bearer \$(cat $STATE/demo-api-key)" $gw/api/sessions/$sid | jq .)
               chat:  curl -s $gw/api/chat -H "Authorization: Bearer \$(cat $STATE/demo-api-key)" \\
                        -H 'Content-Type: application/json' -d '{"user_id": "me", "message": "Hello"}'
  keys         target/$PROFILE/chatbot-ops keys list|create --name NAME|revoke NAME  (with the environment above)
  health       $gw/health  (the aggregator's verdict; also http://127.0.0.1:$AGGREGATOR_PORT/health)
  metrics      http://127.0.0.1:$GATEWAY_METRICS/metrics  (each service on its metrics port: $GATEWAY_METRICS to $AGGREGATOR_METRICS; all of them: http://127.0.0.1:$AGGREGATOR_PORT/metrics/all)
  prometheus   http://127.0.0.1:$PROM_PORT  (rules from alerts/; alerts at http://127.0.0.1:$AM_PORT)
  logs         $STATE/logs/  (SERVICE.log, SERVICE.error.log: ECS JSON lines, rotated at 10 MB)
  stop with    bash scripts/run-local.sh stop
EOT
}

ACTION=start
for arg in "$@"; do
  case "$arg" in
    stop|status|start) ACTION=$arg ;;
    --simulator) LLM_CHOICE=simulator ;;
    *) fail "usage: run-local.sh [start|stop|status] [--simulator]" ;;
  esac
done
case "$ACTION" in
  stop) stop_all; exit 0 ;;
  status) status; exit 0 ;;
esac

bash scripts/setup.sh
# shellcheck disable=SC1091
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
mkdir -p "$STATE/logs"
if [ -z "${CHATBOT_SKIP_BUILD:-}" ]; then
  say "Building the services ($PROFILE)"
  if [ "$PROFILE" = release ]; then cargo build --workspace --bins --locked --release; else cargo build --workspace --bins --locked; fi
fi
start_postgres
start_redis
choose_llm
start_services
start_monitoring
demo
