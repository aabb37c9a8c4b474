#!/usr/bin/env bash
# The full test suite, set-up included (README command 2, and what CI runs).
# Tests start their own throwaway PostgreSQL, Redis and service processes on
# free ports; nothing already running on this machine is used. Formatting,
# clippy, cargo-machete and cargo-deny run first: a warning, an unused
# dependency or a dependency outside deny.toml's policy fails the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
# shellcheck disable=SC1091
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
# The discipline the workspace's lints describe, enforced before any test:
# formatting, and clippy with every warning an error (Cargo.toml [lints]).
if command -v rustup >/dev/null 2>&1; then
  rustup component add clippy rustfmt >/dev/null 2>&1 || true
fi
echo "==> cargo fmt --check"
cargo fmt --all --check
echo "==> cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> cargo machete (no unused dependency)"
cargo machete
echo "==> cargo deny (licences, banned crates, sources: deny.toml)"
cargo deny check bans licenses sources
echo "==> Building the service binaries"
cargo build --workspace --bins --locked
echo "==> Running the tests"
cargo test --workspace --locked --no-fail-fast
