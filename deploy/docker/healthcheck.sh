#!/bin/bash
# chatbot-healthcheck PORT [PATH]: exit 0 when GET http://127.0.0.1:PORT/PATH
# (default /readyz) answers 200 within 5 s. For container health checks: the
# image carries no HTTP client, bash's /dev/tcp is enough for one request.
set -euo pipefail
port=${1:?usage: chatbot-healthcheck PORT [PATH]}
path=${2:-/readyz}
exec 3<>"/dev/tcp/127.0.0.1/${port}"
printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$path" >&3
IFS= read -r -t 5 status <&3
[[ $status == HTTP/1.[01]\ 200\ * ]]
