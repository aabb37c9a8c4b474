#!/usr/bin/env bash
# Installs the chatbot services as systemd units. Run as root on the target,
# from a checkout that holds the release binaries:
#
#   cargo build --release --bins
#   sudo deploy/systemd/install.sh                 # binaries from target/release
#   sudo deploy/systemd/install.sh --from DIR      # binaries from DIR
#
# What it does (every step is safe to repeat):
#   - the system user and group `chatbot` (/etc/sysusers.d/chatbot.conf);
#   - gateway, chat, session, health-aggregator, chatbot-ops -> PREFIX/bin
#     (default /opt/chatbot/bin), this directory's README ->
#     PREFIX/share/doc/chatbot;
#   - /var/backups/chatbot (chatbot:chatbot 0750), where backups go;
#   - /etc/chatbot/default.toml from config/ (replaced: it belongs to the
#     release) and /etc/chatbot/production.toml (a commented template, only if
#     absent: it belongs to the operator);
#   - /etc/chatbot/credentials (0700) with empty placeholders (0600) for the
#     database and Redis URLs, only where no file exists yet: nothing there is
#     ever overwritten;
#   - the units -> /etc/systemd/system; with --with-n8n also the drop-in that
#     hands chat the n8n webhook URL as a credential (and its placeholder);
#   - when systemd runs (/run/systemd/system exists): daemon-reload, enable
#     chatbot-service and the backup and daily-check timers, and start them
#     once no credential placeholder is empty.
#     Otherwise the units are enabled offline (systemctl --root) for the next
#     boot and nothing is started.
#
# --destdir DIR (or DESTDIR=DIR) stages everything under DIR instead of /:
# no user is created, no ownership is changed, nothing is started; the
# units are enabled inside DIR.

set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

from="$repo/target/release"
prefix=/opt/chatbot
destdir=${DESTDIR:-}
with_n8n=0
start=1

binaries=(gateway chat session health-aggregator chatbot-ops)
units=(
    chatbot-service.service
    chatbot-gateway.service
    chatbot-chat.service
    chatbot-session.service
    chatbot-health-aggregator.service
    chatbot-migrate.service
    chatbot.slice
    chatbot-backup.service
    chatbot-backup.timer
    chatbot-daily-check.service
    chatbot-daily-check.timer
)
# Enabled (and started with the stack): the stack and the two timers.
enabled=(chatbot-service chatbot-backup.timer chatbot-daily-check.timer)

usage() {
    cat <<EOF
usage: $0 [--from DIR] [--prefix DIR] [--destdir DIR] [--with-n8n] [--no-start]

  --from DIR     where the release binaries are (default: $repo/target/release)
  --prefix DIR   install prefix, binaries in DIR/bin (default: /opt/chatbot)
  --destdir DIR  stage the installation under DIR (also: DESTDIR=DIR); for
                 packaging and tests: no user, no ownership, no start
  --with-n8n     hand chat the n8n webhook URL as a systemd credential
  --no-start     install and enable, but do not start chatbot-service
EOF
}

die() {
    printf 'install.sh: %s\n' "$*" >&2
    exit 1
}

say() {
    printf 'install.sh: %s\n' "$*"
}

while [ $# -gt 0 ]; do
    case $1 in
        --from) from=${2:?--from needs a directory}; shift 2 ;;
        --from=*) from=${1#*=}; shift ;;
        --prefix) prefix=${2:?--prefix needs a directory}; shift 2 ;;
        --prefix=*) prefix=${1#*=}; shift ;;
        --destdir) destdir=${2:?--destdir needs a directory}; shift 2 ;;
        --destdir=*) destdir=${1#*=}; shift ;;
        --with-n8n) with_n8n=1; shift ;;
        --no-start) start=0; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

# The prefix is written into the units: an absolute path, no odd characters.
[[ $prefix =~ ^/[A-Za-z0-9._/-]*$ ]] || die "--prefix must be an absolute path of [A-Za-z0-9._/-]: $prefix"
prefix=${prefix%/}
[ -n "$prefix" ] || die "--prefix must not be /"

staged=0
root=""
if [ -n "$destdir" ]; then
    staged=1
    mkdir -p "$destdir"
    root=$(cd "$destdir" && pwd)
    [ "$root" != / ] || root=""
fi
if [ $staged -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
    die "run as root (or stage into a directory with --destdir DIR)"
fi

for binary in "${binaries[@]}"; do
    [ -x "$from/$binary" ] || die "$from/$binary is missing or not executable (build with: cargo build --release --bins, or pass --from DIR)"
done
[ -f "$repo/config/default.toml" ] || die "$repo/config/default.toml is missing"

etc="$root/etc/chatbot"
credentials="$etc/credentials"
unit_dir="$root/etc/systemd/system"

# 1. The user: declared in sysusers.d (recreated by systemd-sysusers at boot
#    on image-based systems), applied now unless staged.
install -d -m 0755 "$root/etc/sysusers.d"
install -m 0644 "$here/chatbot.sysusers" "$root/etc/sysusers.d/chatbot.conf"
if [ $staged -eq 0 ]; then
    if command -v systemd-sysusers >/dev/null; then
        systemd-sysusers /etc/sysusers.d/chatbot.conf
    elif ! getent passwd chatbot >/dev/null; then
        useradd --system --user-group --no-create-home --home-dir / \
            --shell /usr/sbin/nologin --comment "Chatbot services" chatbot
    fi
    getent passwd chatbot >/dev/null || die "could not create the user chatbot"
fi

# 2. Binaries and documentation. install(1) replaces a file by a new one, so
#    running services keep their old binary until they restart.
install -d -m 0755 "$root$prefix/bin" "$root$prefix/share/doc/chatbot"
for binary in "${binaries[@]}"; do
    install -m 0755 "$from/$binary" "$root$prefix/bin/$binary"
done
install -m 0644 "$here/README.md" "$root$prefix/share/doc/chatbot/systemd.md"

# The backups (ops.backup.dir): the backup unit's only writable path.
install -d -m 0750 "$root/var/backups/chatbot"
[ $staged -eq 1 ] || chown chatbot:chatbot "$root/var/backups/chatbot"

# 3. Configuration: root-owned, readable by the group chatbot.
group_owned() {
    [ $staged -eq 1 ] || chown root:chatbot "$@"
}
install -d -m 0750 "$etc"
group_owned "$etc"
install -m 0640 "$repo/config/default.toml" "$etc/default.toml"
group_owned "$etc/default.toml"
if [ ! -e "$etc/production.toml" ]; then
    (
        umask 0027
        cat >"$etc/production.toml" <<'EOF'
# This host's settings, layered over /etc/chatbot/default.toml (which
# documents every key and is replaced by each install). install.sh never
# overwrites this file. The units read it through CHATBOT_ENV=production.
#
# Secrets do not belong here: the database and Redis URLs are systemd
# credentials in /etc/chatbot/credentials/ (see the units' LoadCredential=).
#
# [chat]
# model = "llama3.2:1b"
#
# [gateway.server]
# host = "0.0.0.0"          # serve the public API on every interface
#
# [n8n]
# enabled = true            # with install.sh --with-n8n
# health_url = "http://127.0.0.1:5678/healthz"
EOF
    )
    group_owned "$etc/production.toml"
    say "created $etc/production.toml (a template)"
fi

# 4. Credentials: read by systemd (root) and handed to each unit that loads
#    them; the services themselves cannot read this directory.
required=(database-url redis-url)
if [ $with_n8n -eq 1 ] || [ -e "$unit_dir/chatbot-chat.service.d/n8n-webhook.conf" ]; then
    required+=(n8n-webhook-url)
fi
install -d -m 0700 "$credentials"
[ $staged -eq 1 ] || chown root:root "$credentials"
for name in "${required[@]}"; do
    if [ ! -e "$credentials/$name" ]; then
        (umask 0077 && : >"$credentials/$name")
        say "created the empty placeholder $credentials/$name"
    fi
done

# 5. Units, pointed at the prefix.
install -d -m 0755 "$unit_dir"
for unit in "${units[@]}"; do
    sed "s|/opt/chatbot/|$prefix/|g" "$here/$unit" >"$unit_dir/$unit.tmp"
    chmod 0644 "$unit_dir/$unit.tmp"
    mv -f "$unit_dir/$unit.tmp" "$unit_dir/$unit"
done
if [ $with_n8n -eq 1 ]; then
    install -d -m 0755 "$unit_dir/chatbot-chat.service.d"
    install -m 0644 "$here/chatbot-chat.service.d/n8n-webhook.conf" \
        "$unit_dir/chatbot-chat.service.d/n8n-webhook.conf"
fi

# 6. systemd.
empty=()
for name in "${required[@]}"; do
    [ -s "$credentials/$name" ] || empty+=("$credentials/$name")
done
if [ $staged -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    if [ $start -eq 1 ] && [ ${#empty[@]} -eq 0 ]; then
        systemctl enable --now "${enabled[@]}"
        say "chatbot-service and its timers are enabled and started (a running stack keeps its old binaries until: systemctl restart chatbot-service, or one unit at a time)"
    else
        systemctl enable "${enabled[@]}"
        say "chatbot-service and its timers are enabled, not started"
    fi
else
    if command -v systemctl >/dev/null; then
        systemctl --root="${root:-/}" --quiet enable "${enabled[@]}"
        say "systemd is not running here (or the install is staged): the units are installed and enabled for the next boot, nothing was started"
    else
        say "systemd is not running here and systemctl is missing: the units are installed, not enabled"
    fi
fi
if [ ${#empty[@]} -gt 0 ]; then
    say "write these credentials (one line each), then: systemctl start chatbot-service"
    printf '  %s\n' "${empty[@]}"
fi
