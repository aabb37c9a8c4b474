#!/usr/bin/env bash
# Installs what the stack needs on Debian or Ubuntu, skipping what is present.
#   bash scripts/setup.sh          # services' dependencies and the Rust toolchain
#   bash scripts/setup.sh --test   # ... plus the Python tools the tests drive, the
#                                  # Docker engine (started if not running) and the
#                                  # local images of the compose test
# Idempotent: a second run installs nothing. Needs root (or sudo) for apt.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

PACKAGES=(
  postgresql redis-server
  prometheus prometheus-alertmanager prometheus-node-exporter
  prometheus-postgres-exporter prometheus-redis-exporter
  curl jq ca-certificates gcc pkg-config python3 python3-venv procps iproute2
  # local-llm builds llama.cpp (C++, cmake) and its bindings (bindgen: libclang).
  cmake g++ clang libclang-dev
)

# The compose test: Debian's Docker engine, debootstrap for the base image,
# systemd's tools and shellcheck for checking the units and install script.
[ "${1:-}" = "--test" ] && PACKAGES+=(docker.io debootstrap systemd shellcheck)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "Installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  # Debian starts packaged daemons on install where it can; the stack runs its
  # own instances on its own ports, so block that.
  printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
  as_root chmod +x /usr/sbin/policy-rc.d
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  as_root rm -f /usr/sbin/policy-rc.d
else
  say "Debian packages already installed"
fi

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    say "Using the Rust toolchain in ~/.cargo"
  else
    say "Installing the Rust toolchain with rustup"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c clippy,rustfmt
  fi
fi

# Starts the Docker engine when none answers (systemd may not be PID 1 here).
start_docker() {
  docker info >/dev/null 2>&1 && return
  say "Starting the Docker engine"
  if [ -d /run/systemd/system ]; then
    as_root systemctl start docker
  else
    as_root sh -c 'nohup dockerd >/var/log/dockerd.log 2>&1 &'
  fi
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && return; sleep 0.5; done
  echo "the Docker engine did not start; see /var/log/dockerd.log" >&2
  exit 1
}

if [ "${1:-}" = "--test" ]; then
  # shellcheck disable=SC1091
  [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
  if ! command -v oha >/dev/null 2>&1; then
    say "Installing the oha load generator (the benchmark's smoke test uses it)"
    cargo install --locked oha --version 1.16.0
  fi
  if ! command -v cargo-machete >/dev/null 2>&1; then
    say "Installing cargo-machete (the test command checks for unused dependencies)"
    cargo install --locked cargo-machete --version 0.9.2
  fi
  if ! command -v cargo-deny >/dev/null 2>&1; then
    say "Installing cargo-deny (the dependency policy in deny.toml; about 5 minutes)"
    cargo install --locked cargo-deny --version 0.20.2
  fi
  VENV=${CHATBOT_TEST_VENV:-.venv}
  if [ ! -x "$VENV/bin/pip" ]; then
    say "Creating the Python venv $VENV for the test tools"
    "$(command -v python3)" -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
  fi
  say "Python test tools in $VENV (scripts/test-requirements.txt)"
  "$VENV/bin/pip" install -q -r scripts/test-requirements.txt
  say "The local model for local-llm's tests (scripts/fetch-model.sh)"
  bash scripts/fetch-model.sh >/dev/null
  start_docker
  bash deploy/compose/local/build.sh
fi
