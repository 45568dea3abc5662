# Sourced by scripts/run and scripts/test: make .venv hold exactly requirements.txt.
set -euo pipefail
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    if ! "$PYTHON" -m venv .venv 2>/dev/null; then
        # Debian splits venv out of python3; install it when we may.
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
            rm -rf .venv && "$PYTHON" -m venv .venv
        else
            echo "python3 -m venv failed: install python3-venv (apt-get install python3-venv)" >&2
            exit 1
        fi
    fi
fi
stamp=.venv/.requirements.sha256
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "installing pinned dependencies into .venv ..." >&2
    .venv/bin/python -m pip install -q --upgrade pip >/dev/null
    .venv/bin/python -m pip install -q -r requirements.txt
    echo "$want" > "$stamp"
fi
export PATH="$PWD/.venv/bin:$PATH"

# The official Socket.IO client for the JS compatibility tests (and the web console), when npm is here.
if command -v npm >/dev/null 2>&1 && [ -f package-lock.json ]; then
    js_stamp=node_modules/.package-lock.sha256
    js_want=$(sha256sum package-lock.json | cut -d' ' -f1)
    if [ "$(cat "$js_stamp" 2>/dev/null)" != "$js_want" ]; then
        echo "installing pinned JavaScript packages (npm ci) ..." >&2
        npm ci --silent --no-audit --no-fund
        echo "$js_want" > "$js_stamp"
    fi
fi
