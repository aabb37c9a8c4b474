#!/usr/bin/env bash
# Builds the local images the compose test uses instead of registry images
# (none is reachable on the test machines), reusing them when present:
#   chatbot-test/debian:bookworm  a Debian base made with debootstrap and docker import
#   chatbot-local/deps:1          PostgreSQL, Redis, Prometheus, Alertmanager, exporters
#                                 (this folder's Dockerfile; the layer cache makes reruns quick)
# Needs a running Docker engine (scripts/setup.sh --test starts one) and root.
set -euo pipefail
cd "$(dirname "$0")"
BASE=chatbot-test/debian:bookworm
export DOCKER_BUILDKIT=0   # the engine here has no buildx; the legacy builder suffices

if ! docker image inspect "$BASE" >/dev/null 2>&1; then
  echo "==> Making the Debian base image $BASE with debootstrap (about a minute)"
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >/dev/null
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | docker import -c 'CMD ["bash"]' - "$BASE" >/dev/null
fi
echo "==> Building chatbot-local/deps:1 (cached after the first time)"
if ! out=$(docker build -q --build-arg BASE_IMAGE="$BASE" -t chatbot-local/deps:1 . 2>&1); then
  echo "$out" >&2
  exit 1
fi
