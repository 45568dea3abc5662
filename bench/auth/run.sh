#!/usr/bin/env bash
# Entry point of the auth benchmark: installs wrk when missing, prepares .venv, runs bench.py with its arguments.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v wrk >/dev/null; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        echo "wrk is missing: install it (apt-get install wrk) or run as root" >&2
        exit 1
    fi
    install_wrk() { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
    # Refresh the package lists only when they are too old to find wrk: an update is slow.
    install_wrk || { apt-get update -qq && install_wrk; }
fi

. scripts/bootstrap.sh
exec .venv/bin/python bench/auth/bench.py "$@"
