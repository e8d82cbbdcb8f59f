#!/usr/bin/env bash
# Create (if absent) a Python venv with slixmpp for the test clients.
# Usage: scripts/python-venv.sh [DIR]        (default DIR: .venv)
# Env:   PYTHON (interpreter used to create the venv, default: python3)
#        SLIXMPP_SPEC (pip requirement, default: slixmpp==1.17.*)
set -euo pipefail

DIR="${1:-.venv}"
PYTHON="${PYTHON:-python3}"
SLIXMPP_SPEC="${SLIXMPP_SPEC:-slixmpp==1.17.*}"

die() { echo "python-venv.sh: error: $*" >&2; exit 1; }

command -v "$PYTHON" >/dev/null 2>&1 || die "interpreter '$PYTHON' not found (set PYTHON=...)"

if [ ! -x "$DIR/bin/python" ]; then
    if ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then
        # Debian splits venv/ensurepip into python3-venv.
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            apt-get update -qq >/dev/null || die "apt-get update failed"
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null \
                || die "apt-get install python3-venv failed"
        else
            die "'$PYTHON -m venv' is unavailable (install python3-venv)"
        fi
    fi
    "$PYTHON" -m venv "$DIR" || die "could not create venv at $DIR"
fi

if ! "$DIR/bin/python" - "$SLIXMPP_SPEC" >/dev/null 2>&1 <<'PY'
import sys
from importlib.metadata import version
import slixmpp  # noqa: F401
# spec like slixmpp==1.17.* : check the installed version matches the prefix
spec = sys.argv[1]
want = spec.split("==", 1)[1].rstrip("*").rstrip(".") if "==" in spec else ""
have = version("slixmpp")
sys.exit(0 if not want or have == want or have.startswith(want + ".") else 1)
PY
then
    "$DIR/bin/python" -m pip install --quiet --disable-pip-version-check "$SLIXMPP_SPEC" \
        || die "pip install $SLIXMPP_SPEC into $DIR failed"
    "$DIR/bin/python" -c 'import slixmpp' || die "slixmpp installed but not importable in $DIR"
fi
