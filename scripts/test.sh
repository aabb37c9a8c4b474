#!/usr/bin/env bash
# The full test suite, set-up included (README command 2, and what CI runs).
# Tests start their own throwaway PostgreSQL, Redis and service processes on
# free ports; nothing already running on this machine is used.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
# shellcheck disable=SC1091
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
echo "==> Building the service binaries"
cargo build --workspace --bins --locked
echo "==> Running the tests"
cargo test --workspace --locked --no-fail-fast
