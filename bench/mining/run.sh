#!/usr/bin/env bash
# Entry point of the mining benchmarks: run.sh [heartbeat|sweep|all] [flags]; installs wrk when missing, prepares .venv.
set -euo pipefail
cd "$(dirname "$0")/../.."

needs_wrk=1
case "${1:-all}" in sweep) needs_wrk=0 ;; esac
if [ "$needs_wrk" = 1 ] && ! command -v wrk >/dev/null; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        echo "wrk is missing: install it (apt-get install wrk) or run as root" >&2
        exit 1
    fi
    install_wrk() { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
    # Refresh the package lists only when they are too old to find wrk: an update is slow.
    install_wrk || { apt-get update -qq && install_wrk; }
fi

. scripts/bootstrap.sh
exec .venv/bin/python bench/mining/bench.py "$@"
