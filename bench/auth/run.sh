#!/usr/bin/env bash
# Entry point of the auth benchmark: installs wrk when missing, prepares .venv, runs bench.py with its arguments.
set -euo pipefail
cd "$(dirname "$0")/../.."

. bench/lib.sh
bench_ensure_wrk

. scripts/bootstrap.sh
exec .venv/bin/python bench/auth/bench.py "$@"
