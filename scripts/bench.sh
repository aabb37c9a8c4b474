#!/usr/bin/env bash
# Load benchmark (README): builds in release mode, starts the stack against the
# Ollama simulator on free ports, drives it with oha at constant arrival rates
# and writes target/bench/results.json and results.md. About 3 to 4 minutes.
#   bash scripts/bench.sh                 # the full benchmark
#   bash scripts/bench.sh --rate 500 ...  # options of scripts/bench.py (--help)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
if ! command -v oha >/dev/null 2>&1; then
  echo "==> Installing the oha load generator (cargo install oha)"
  cargo install --locked oha --version 1.16.0
fi
profile=release
for arg in "$@"; do [ "$arg" = "--profile=debug" ] && profile=debug; done
if [ "$profile" = release ]; then
  echo "==> Building the services (release)"
  cargo build --workspace --bins --locked --release
fi
exec python3 scripts/bench.py "$@"
