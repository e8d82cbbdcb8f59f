# Shared helpers for scripts/*-env.sh. Source it; it expects `set -euo pipefail`
# and a variable SCRIPT_NAME (used in messages).

die() { echo "${SCRIPT_NAME:-script}: error: $*" >&2; exit 1; }

# ensure_pkgs PKG... : apt-get install the Debian packages if any is missing.
# `apt-get update` runs at most once per script run, only when an install fails
# (a bare CI image has empty package lists).
# Sets INSTALLED_NOW=1 if it installed something (the caller then stops any
# daemon the package started, see stop_packaged).
_APT_UPDATED=0
INSTALLED_NOW=0
_missing_pkgs() {
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"
    done
}
ensure_pkgs() {
    local missing
    missing="$(_missing_pkgs "$@")"
    [ -z "$missing" ] && return 0
    [ "$(id -u)" = 0 ] || die "packages missing ($missing) and not root to install them"
    command -v apt-get >/dev/null 2>&1 || die "packages missing ($missing) and no apt-get"
    # Serialise installs of concurrently started env scripts (dpkg lock).
    local lockfd
    exec {lockfd}>/tmp/.mixd-scripts-apt.lock
    flock -w 600 "$lockfd" || die "timed out waiting for /tmp/.mixd-scripts-apt.lock"
    missing="$(_missing_pkgs "$@")"
    if [ -n "$missing" ]; then
        local log; log="$(mktemp)"
        # shellcheck disable=SC2086
        if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >"$log" 2>&1; then
            # A bare image has no package lists: update once, then retry.
            if [ "$_APT_UPDATED" = 0 ]; then
                _APT_UPDATED=1
                apt-get update -q >"$log" 2>&1 || { tail -n 20 "$log" >&2; rm -f "$log"; die "apt-get update failed"; }
            fi
            # shellcheck disable=SC2086
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >"$log" 2>&1 \
                || { tail -n 20 "$log" >&2; rm -f "$log"; die "apt-get install $missing failed"; }
        fi
        rm -f "$log"
        INSTALLED_NOW=1
    fi
    exec {lockfd}>&-
}

# stop_packaged NAME : stop a daemon the Debian package may have started (no systemd needed).
stop_packaged() {
    local name="$1"
    if [ -x "/etc/init.d/$name" ]; then
        "/etc/init.d/$name" stop >/dev/null 2>&1 || true
    fi
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        systemctl stop "$name" >/dev/null 2>&1 || true
    fi
}

# abs_dir DIR : create DIR and print its absolute path.
abs_dir() {
    mkdir -p "$1" || die "cannot create directory $1"
    (cd "$1" && pwd -P)
}

# connect_host BIND : address to connect to for a listener bound on BIND.
connect_host() {
    case "$1" in
        0.0.0.0|'*'|'') echo 127.0.0.1 ;;
        ::|'[::]') echo ::1 ;;
        *) echo "$1" ;;
    esac
}

# port_open HOST PORT : true if a TCP connect succeeds (1 s timeout).
port_open() {
    timeout 1 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" >/dev/null 2>&1
}

# proc_alive PID : true if PID is a running (non-zombie) process.
proc_alive() {
    [ -n "$1" ] && kill -0 "$1" 2>/dev/null || return 1
    # A killed process stays a zombie until its parent (often pid 1) reaps it.
    local state
    state="$(sed -n 's/^[0-9]* (.*) \([A-Za-z]\).*/\1/p' "/proc/$1/stat" 2>/dev/null || true)"
    [ "$state" != Z ] && [ "$state" != X ]
}

# pid_alive PIDFILE : true if the pid in PIDFILE is a running process.
pid_alive() {
    local pid
    [ -f "$1" ] || return 1
    pid="$(cat "$1" 2>/dev/null)" || return 1
    proc_alive "$pid"
}

# wait_ports PIDFILE LOG TIMEOUT HOST PORT... : wait until every PORT accepts
# connections; fail with the log tail if the process dies or time runs out.
wait_ports() {
    local pidfile="$1" log="$2" timeout="$3" host="$4"; shift 4
    local deadline=$((SECONDS + timeout)) port ok
    while :; do
        ok=1
        for port in "$@"; do port_open "$host" "$port" || { ok=0; break; }; done
        [ "$ok" = 1 ] && return 0
        if ! pid_alive "$pidfile"; then
            echo "--- tail of $log ---" >&2; tail -n 30 "$log" >&2 2>/dev/null || true
            die "server exited during startup (see $log)"
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "--- tail of $log ---" >&2; tail -n 30 "$log" >&2 2>/dev/null || true
            die "ports $* on $host not accepting connections after ${timeout}s (see $log)"
        fi
        sleep 0.2
    done
}

# check_ports_free HOST PORT... : fail if something already listens there.
check_ports_free() {
    local host="$1" port; shift
    for port in "$@"; do
        port_open "$host" "$port" && die "port $port on $host is already in use by another process"
    done
    return 0
}

# kill_wait PIDFILE TIMEOUT : SIGTERM, wait, SIGKILL after TIMEOUT seconds; removes PIDFILE.
kill_wait() {
    local pidfile="$1" timeout="$2" pid i
    if ! pid_alive "$pidfile"; then rm -f "$pidfile"; return 0; fi
    pid="$(cat "$pidfile")"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < timeout * 10; i++)); do
        proc_alive "$pid" || { rm -f "$pidfile"; return 0; }
        sleep 0.1
    done
    echo "${SCRIPT_NAME:-script}: warning: pid $pid did not exit after ${timeout}s, sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        proc_alive "$pid" || break
        sleep 0.1
    done
    rm -f "$pidfile"
}

# lua_str / yaml_str : quote a value for the config files.
lua_str() { local s="${1//\\/\\\\}"; s="${s//\"/\\\"}"; printf '"%s"' "$s"; }
yaml_str() { local s="${1//\\/\\\\}"; s="${s//\"/\\\"}"; printf '"%s"' "$s"; }
