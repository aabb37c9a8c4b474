#!/usr/bin/env bash
# Creates the secret files docker-compose.yml reads, in deploy/compose/secrets/
# (or $CHATBOT_SECRETS_DIR): a random database and Grafana admin password, a
# random token between the services,
# and empty n8n and Alertmanager receiver settings to fill in. Never
# overwrites a file that exists. The directory is private (0700); the files
# are readable (0644) because Compose bind-mounts them as they are and the
# services run as non-root users.
set -euo pipefail
dir=${CHATBOT_SECRETS_DIR:-$(cd "$(dirname "$0")" && pwd)/secrets}
mkdir -p "$dir"
chmod 700 "$dir"
write() { # name value
  if [ -e "$dir/$1" ]; then echo "kept    $dir/$1"; return; fi
  printf '%s\n' "$2" > "$dir/$1"
  chmod 644 "$dir/$1"
  echo "created $dir/$1"
}
random() { head -c 24 /dev/urandom | base64 | tr -d '/+=' ; }
write db_password "$(random)"
write grafana_admin_password "$(random)"
write internal_token "$(random)"
# Fill these in to turn the integrations on (see docs/deployment.md).
write n8n_webhook_url ""
write slack_webhook_url "http://127.0.0.1:9/slack-webhook-not-configured"
write pagerduty_routing_key "not-configured"
