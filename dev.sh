#!/usr/bin/env bash
# vessel-seg on a development machine. Two commands do everything:
#   ./dev.sh demo   set up (first time) and run the daemon on the simulated NPU with a demo camera feed
#                   and the status page on http://127.0.0.1:8080
#   ./dev.sh test   set up (first time) and run the test suite (extra args go to pytest)
# Environment: PYTHON (interpreter for the virtualenv, default python3), VENV (default .venv).
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

die() { echo "dev.sh: $*" >&2; exit 1; }

setup() {
    command -v "$PYTHON" >/dev/null 2>&1 || die "no Python interpreter '$PYTHON' (set PYTHON=...)"
    if [ ! -x "$VENV/bin/python" ]; then
        echo "dev.sh: creating virtualenv $VENV with $("$PYTHON" --version 2>&1)"
        "$PYTHON" -m venv "$VENV" || die "could not create a virtualenv (on Debian/Ubuntu: apt-get install python3-venv)"
    fi
    # Reinstall when pyproject.toml changes.
    local stamp
    stamp="$VENV/.vessel-seg-$(cksum < pyproject.toml | cut -d' ' -f1)-${VESSEL_SEG_EXTRAS:-test}"
    if [ ! -f "$stamp" ]; then
        echo "dev.sh: installing vessel-seg and its dependencies into $VENV"
        "$VENV/bin/python" -m pip install -q --upgrade pip
        "$VENV/bin/python" -m pip install -q -e ".[${VESSEL_SEG_EXTRAS:-test}]"
        rm -f "$VENV"/.vessel-seg-*
        touch "$stamp"
    fi
}

browser() {
    # The status page's browser test uses Debian's Chromium (never a downloaded browser); best effort.
    if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        echo "dev.sh: installing Debian's chromium for the browser test"
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
            || echo "dev.sh: chromium not installed; the browser test will be skipped"
    fi
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
    demo)
        setup
        exec "$VENV/bin/vessel-seg" run --demo --runtime sim --data-dir "${DATA_DIR:-demo-data}" \
            --host "${HOST:-127.0.0.1}" --port "${PORT:-8080}" "$@"
        ;;
    test)
        setup
        browser
        exec "$VENV/bin/python" -m pytest -q "$@"
        ;;
    *)
        sed -n '2,6p' "$0"
        exit 2
        ;;
esac
