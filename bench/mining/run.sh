#!/usr/bin/env bash
# Entry point of the mining benchmarks: run.sh [heartbeat|sweep|all] [flags]; installs wrk when missing, prepares .venv.
set -euo pipefail
cd "$(dirname "$0")/../.."

needs_wrk=1
case "${1:-all}" in sweep) needs_wrk=0 ;; esac
. bench/lib.sh
if [ "$needs_wrk" = 1 ]; then bench_ensure_wrk; fi

. scripts/bootstrap.sh
exec .venv/bin/python bench/mining/bench.py "$@"
