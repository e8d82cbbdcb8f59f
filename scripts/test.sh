#!/usr/bin/env bash
# The one command that runs every test of mixd (README "Tests"; .ci/run calls it).
# It installs what the tests need on a bare Debian machine: Prosody, ejabberd and PostgreSQL from
# Debian's packages, slixmpp and pytest from PyPI into .venv. Each server runs privately in a
# temporary directory on free loopback ports; nothing is left running afterwards.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/lib/common.sh
SCRIPT_NAME=test.sh

step() { printf '\n==> %s\n' "$*"; }

step "system packages (Prosody, ejabberd, PostgreSQL)"
ensure_pkgs prosody ejabberd postgresql
for svc in prosody ejabberd postgresql; do stop_packaged "$svc" || true; done

step "Python clients (.venv: slixmpp, pytest)"
bash scripts/python-venv.sh .venv
.venv/bin/python -c 'import pytest' 2>/dev/null || .venv/bin/pip install -q 'pytest==8.*'

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "unit and end-to-end tests (SQLite)"
cargo build --workspace --all-targets --quiet
cargo test --workspace --quiet

step "interop: slixmpp through Prosody and ejabberd"
MIXD_BIN="$PWD/target/debug/mixd" .venv/bin/python -m pytest -q tests/interop

step "PostgreSQL: the store tests and the whole end-to-end suite on a real server"
PGDIR="$(mktemp -d /tmp/mixd-pg-XXXXXX)"
trap 'bash scripts/postgres-env.sh stop "$PGDIR" >/dev/null 2>&1 || true; rm -rf "$PGDIR"' EXIT
PG_URL="$(PG_PORT="$(.venv/bin/python -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')" \
    bash scripts/postgres-env.sh start "$PGDIR" | tail -n 1)"
# One database for all: run these tests one at a time.
MIXD_TEST_PG_URL="$PG_URL" cargo test -p mam-store --quiet -- --test-threads=1
# The same end-to-end suite on PostgreSQL: every scansion script (both modes), the lifecycle,
# kill -9 durability and retention tests; each mixd gets a database of its own.
MIXD_TEST_PG_URL="$PG_URL" cargo test --test e2e --quiet

echo
echo "all tests passed"
