#!/usr/bin/env bash
# Quick start: a local Prosody (installed from Debian's packages if absent) with mixd attached,
# SQLite under ./data. Prints how a client logs in, then runs mixd in the foreground; Ctrl-C
# stops mixd and the Prosody this script started.
#
# Env (defaults): C2S_PORT=5222 COMPONENT_PORT=5347 MIXD_HTTP=127.0.0.1:5380
#                 COMPONENT_SECRET=(random, kept in data/secret) PROFILE=release
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/lib/common.sh
SCRIPT_NAME=quickstart.sh

DATA="$PWD/data"
mkdir -p "$DATA"
export C2S_PORT="${C2S_PORT:-5222}" COMPONENT_PORT="${COMPONENT_PORT:-5347}"
export MIX_DOMAIN=mix.localhost MUC_DOMAIN=muc.localhost XMPP_DOMAIN=localhost
export XMPP_USERS="${XMPP_USERS:-alice:alice bob:bob carol:carol}"
if [ -z "${COMPONENT_SECRET:-}" ]; then
    [ -s "$DATA/secret" ] || head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$DATA/secret"
    COMPONENT_SECRET="$(cat "$DATA/secret")"
fi
export COMPONENT_SECRET
PROFILE="${PROFILE:-release}"

command -v cargo >/dev/null 2>&1 || die "cargo is needed to build mixd (stable Rust, edition 2024)"
echo "==> building mixd ($PROFILE)"
if [ "$PROFILE" = release ]; then cargo build --release --quiet --bin mixd; else cargo build --quiet --bin mixd; fi

echo "==> Prosody for localhost (c2s :$C2S_PORT, components :$COMPONENT_PORT), state in data/prosody"
bash scripts/prosody-env.sh start "$DATA/prosody"
stop_all() { bash scripts/prosody-env.sh stop "$DATA/prosody" >/dev/null 2>&1 || true; }
trap stop_all EXIT

export MIXD_SERVER="127.0.0.1:$COMPONENT_PORT" MIXD_MIX_DOMAIN="$MIX_DOMAIN" MIXD_MUC_DOMAIN="$MUC_DOMAIN"
export MIXD_SECRET="$COMPONENT_SECRET" MIXD_DATA_DIR="$DATA" MIXD_HTTP="${MIXD_HTTP:-127.0.0.1:5380}"

cat <<MSG

mixd is starting, attached to Prosody.
  Log in with any XMPP client:  alice@localhost  password: alice   (also bob/bob, carol/carol)
  Server: 127.0.0.1 port $C2S_PORT, plaintext allowed on loopback (no TLS).
  Services: MIX on $MIX_DOMAIN, the MUC mirror on $MUC_DOMAIN (try service discovery on both).
  Admin:  curl http://$MIXD_HTTP/health   curl http://$MIXD_HTTP/metrics
  Create a channel:  curl -d '{"name":"coven"}' http://$MIXD_HTTP/channels
  Database: SQLite in data/mixd.db. Ctrl-C stops mixd and this Prosody.

MSG
"target/$PROFILE/mixd" &
MIXD_PID=$!
trap 'kill -TERM $MIXD_PID 2>/dev/null || true' INT TERM
set +e
wait "$MIXD_PID"
status=$?
# A signal interrupted the first wait: wait for mixd's own clean exit.
kill -0 "$MIXD_PID" 2>/dev/null && wait "$MIXD_PID" && status=$?
exit "$status"
