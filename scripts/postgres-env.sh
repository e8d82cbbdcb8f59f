#!/usr/bin/env bash
# Private PostgreSQL cluster for mixd tests: data, socket, log under DIR.
#
# Usage: scripts/postgres-env.sh start|stop|restart|status DIR
#
# Env (defaults): PG_PORT=55432  START_TIMEOUT=30
#
# `start` installs PostgreSQL (Debian package) if absent, initdb's DIR/data as the
# `postgres` user (trust auth, listening on 127.0.0.1 only, unix socket in DIR),
# starts it with pg_ctl, creates role `mixd` and database `mixd` (owner mixd), and
# prints the URL postgres://mixd@127.0.0.1:PORT/mixd as the last line of stdout.
# The cluster is tuned for tests (fsync off): do not keep data you care about in it.
set -euo pipefail
SCRIPT_NAME=postgres-env.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage() { echo "usage: $0 start|stop|restart|status DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
CMD="$1"
[ -n "$2" ] || usage
DIR="$(abs_dir "$2")"
case "$DIR" in *[[:space:]\"\']*) die "DIR must not contain spaces or quotes: $DIR" ;; esac

PG_PORT="${PG_PORT:-55432}"
START_TIMEOUT="${START_TIMEOUT:-30}"
case "$PG_PORT" in ''|*[!0-9]*) die "PG_PORT must be a number" ;; esac
DATA="$DIR/data"
LOG="$DIR/postgres.log"
URL="postgres://mixd@127.0.0.1:$PG_PORT/mixd"

ensure_postgres() {
    ensure_pkgs postgresql
    if [ "$INSTALLED_NOW" = 1 ]; then stop_packaged postgresql; fi
    PGBIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)"
    [ -n "$PGBIN" ] && [ -x "$PGBIN/initdb" ] || die "no /usr/lib/postgresql/*/bin/initdb found"
    id postgres >/dev/null 2>&1 || die "system user 'postgres' does not exist"
}

as_pg() { runuser -u postgres -- "$@"; }

psql_admin() {
    "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres "$@"
}

is_running() {
    [ -f "$DATA/PG_VERSION" ] && as_pg "$PGBIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

do_start() {
    ensure_postgres
    [ "$(id -u)" = 0 ] || die "must run as root (initdb/pg_ctl run as user postgres via runuser)"
    chown postgres: "$DIR"
    as_pg test -w "$DIR" -a -x "$DIR" \
        || die "user postgres cannot write $DIR (are all parent directories world-executable?)"
    if [ ! -f "$DATA/PG_VERSION" ]; then
        rm -rf "$DATA"
        if ! as_pg "$PGBIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
                >"$DIR/initdb.log" 2>&1; then
            tail -n 20 "$DIR/initdb.log" >&2
            die "initdb failed (see $DIR/initdb.log)"
        fi
        # initdb --auth=trust already trusts local + 127.0.0.1/32 + ::1/128 in pg_hba.conf.
    fi
    if ! is_running; then
        check_ports_free 127.0.0.1 "$PG_PORT"
        if ! as_pg "$PGBIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t "$START_TIMEOUT" \
                -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$DIR -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
                start >"$DIR/pg_ctl.out" 2>&1; then
            echo "--- tail of $LOG ---" >&2; tail -n 20 "$LOG" >&2 2>/dev/null || true
            cat "$DIR/pg_ctl.out" >&2
            die "pg_ctl start failed"
        fi
    fi
    # Running cluster may have been started on another port by an earlier call.
    local port
    port="$(sed -n 4p "$DATA/postmaster.pid" 2>/dev/null || true)"
    [ "$port" = "$PG_PORT" ] || die "cluster in $DATA is running on port ${port:-?}, not PG_PORT=$PG_PORT (stop it first)"
    if [ "$(psql_admin -tAc "SELECT 1 FROM pg_roles WHERE rolname = 'mixd'")" != 1 ]; then
        psql_admin -c "CREATE ROLE mixd LOGIN CREATEDB" || die "could not create role mixd"
    fi
    if [ "$(psql_admin -tAc "SELECT 1 FROM pg_database WHERE datname = 'mixd'")" != 1 ]; then
        psql_admin -c "CREATE DATABASE mixd OWNER mixd" || die "could not create database mixd"
    fi
    echo "$URL"
}

do_stop() {
    ensure_postgres
    if is_running; then
        as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w -t 30 stop >"$DIR/pg_ctl.out" 2>&1 \
            || { cat "$DIR/pg_ctl.out" >&2; die "pg_ctl stop failed"; }
    fi
}

case "$CMD" in
    start) do_start ;;
    stop) do_stop ;;
    restart) do_stop; do_start ;;
    status)
        ensure_postgres
        if is_running; then echo "running ($URL)"; else echo "stopped"; exit 1; fi ;;
    *) usage ;;
esac
