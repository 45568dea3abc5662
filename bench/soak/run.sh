#!/usr/bin/env bash
# Soak benchmark: the whole service (web, worker, scheduler) for SOAK_MINUTES (20) under the chat harness's default
# load plus mining heartbeats; memory and latency per minute and a leak verdict. run.sh [--db sqlite|postgresql] [flags]
# Report in bench/results/soak/ (gitignored). Exit code 1 when a check fails, 2 when the benchmark itself fails.
set -euo pipefail
cd "$(dirname "$0")/../.."

command -v node >/dev/null || { echo "node is missing: the load driver is bench/soak/load.mjs" >&2; exit 2; }
. scripts/bootstrap.sh
[ -d node_modules/socket.io-client ] || { echo "node_modules/socket.io-client is missing: run npm ci" >&2; exit 2; }

# Other benchmarks on this 2-core machine would skew the latencies: wait for them, but not for ever.
. bench/lib.sh
bench_wait_until_idle soak "${SOAK_BUSY_WAIT:-900}"

# Bounded whatever happens: the load itself, plus seeding, start-up, drain and the report.
minutes=${SOAK_MINUTES:-20}
limit=$(awk -v m="$minutes" 'BEGIN { printf "%d", m * 60 + 900 }')
exec timeout -k 30 "$limit" .venv/bin/python bench/soak/soak.py "$@"
