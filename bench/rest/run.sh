#!/usr/bin/env bash
# REST benchmark of BSN beside drf, fastapi and flask in the shared harness: run.sh [harness flags...]
#   bench/rest/run.sh                 default volume on PostgreSQL (about 5 min; the first run also loads the data)
#   bench/rest/run.sh --db sqlite     the same on SQLite files
#   bench/rest/run.sh --repeat 2      the whole set twice, to see the noise (verdict on the medians)
#   bench/rest/run.sh --small         small volume, short runs (about 1.5 min)
# Any flag is passed to the harness's run.sh (see its README). The table, the harness's summary.json and the
# verdict against BSN's targets (verdict.py) go to bench/results/rest/ (gitignored) and are printed.
# Exit code 1 when an answer check fails or a target is missed.
# Env: REST_BENCH (harness folder; default ../shared/bench/rest beside the repo, else /work/shared/bench/rest),
#      REST_BENCH_SERVERS (drf,fastapi,flask,bsn), REST_BENCH_TIMEOUT (s, 1800), REST_BENCH_BUSY_WAIT (s, 900).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$REPO/bench/rest
OUT=$REPO/bench/results/rest
if [ -n "${REST_BENCH:-}" ]; then HARNESS=$REST_BENCH
elif [ -d "$REPO/../shared/bench/rest" ]; then HARNESS=$REPO/../shared/bench/rest
else HARNESS=/work/shared/bench/rest; fi
HARNESS=$(cd "$HARNESS" && pwd)
SERVERS=${REST_BENCH_SERVERS:-drf,fastapi,flask,bsn}
# Every harness run is bounded (about 5 min per database when all goes well, plus a first load).
RUN_TIMEOUT=${REST_BENCH_TIMEOUT:-1800}
# Other benchmarks on this 2-core machine would skew every figure: wait for them, but not for ever.
BUSY_WAIT=${REST_BENCH_BUSY_WAIT:-900}

say() { printf '[bench/rest] %s\n' "$*" >&2; }

tmp=$(mktemp -d /tmp/bsn-rest-run.XXXXXX)
harness_pid=
cleanup() {
    # A harness still running (Ctrl-C, error) stops its server and wrk on SIGTERM.
    if [ -n "$harness_pid" ] && kill -0 "$harness_pid" 2>/dev/null; then kill -TERM "$harness_pid" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cd "$REPO"
[ -x .venv/bin/gunicorn ] || { say "no .venv here: install the requirements first (scripts/bootstrap.sh)"; exit 1; }
if [ ! -x "$HARNESS/.venv/bin/python" ] || ! command -v wrk >/dev/null; then
    say "the harness is not set up: running its setup.sh once (about 1.5 min)"
    (cd "$HARNESS" && timeout 1800 ./setup.sh)
fi

. "$REPO/bench/lib.sh"
bench_wait_until_idle rest "$BUSY_WAIT"

say "harness $HARNESS, servers $SERVERS, flags: $*"
status=0
(cd "$HARNESS" && exec timeout -k 30 "$RUN_TIMEOUT" ./run.sh --servers-file "$HERE/servers.json" --servers "$SERVERS" "$@") \
    > >(tee "$tmp/harness.log") 2>&1 &
harness_pid=$!
wait "$harness_pid" || status=$?
harness_pid=

# The run's own folder, as the harness printed it ("results -> results/<stamp>-<scenario>-<db>").
run_dir=$(sed -n 's/^\[bench\] results -> //p' "$tmp/harness.log" | tail -1)
if [ -z "$run_dir" ] || [ ! -f "$HARNESS/$run_dir/summary.json" ]; then
    say "the harness wrote no results (exit $status)"
    exit 1
fi
mkdir -p "$OUT"
name=$(basename "$run_dir")
cp "$HARNESS/$run_dir/summary.json" "$OUT/$name.summary.json"
verdict_status=0
{
    cat "$HARNESS/$run_dir/table.md"
    echo
    printf 'BSN at %s (git %s%s); harness %s\n\n' "$REPO" "$(git rev-parse --short HEAD 2>/dev/null || echo '?')" \
        "$( [ -n "$(git status --porcelain 2>/dev/null)" ] && echo ', uncommitted changes')" "$HARNESS"
    .venv/bin/python "$HERE/verdict.py" "$HARNESS/$run_dir/summary.json" || verdict_status=$?
} > "$OUT/$name.md"
# <stamp>-<scenario>-<db> -> latest-<scenario>-<db>.md (the stamp is 19 characters)
cp "$OUT/$name.md" "$OUT/latest-${name:20}.md"
echo
cat "$OUT/$name.md"
say "written $OUT/$name.md (and $name.summary.json)"
[ "$status" = 0 ] && [ "$verdict_status" = 0 ] || exit 1
