#!/usr/bin/env bash
# Chat benchmark of BSN beside node-socketio, django-channels and flask-socketio: run.sh [default|heavy|idle|all].
#   default, heavy: the shared harness's scenario (CHAT_BENCH, default ../shared/bench/chat) with our servers file
#   idle:           RSS of the web process holding 1,000 idle authenticated /chat sockets that offer
#                   permessage-deflate, as browsers do (idle.mjs --deflate)
#   all (default):  the three in turn
# Tables and verdicts go to bench/results/chat/ (gitignored) and are printed. Exit code 1 when a target is missed.
# Env: CHAT_BENCH (harness folder), CHAT_BENCH_SERVERS (node-socketio,django-channels,flask-socketio,bsn,bsn-2w),
#      CHAT_BENCH_TIMEOUT (s, 1500), CHAT_BENCH_BUSY_WAIT (s, 900).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$REPO/bench/chat
OUT=$REPO/bench/results/chat
HARNESS=$(cd "${CHAT_BENCH:-$REPO/../shared/bench/chat}" && pwd)
SERVERS=${CHAT_BENCH_SERVERS:-node-socketio,django-channels,flask-socketio,bsn,bsn-2w}
# Each harness run is bounded: about 4 min (default) and 6 min (heavy) with the five servers when all goes well.
RUN_TIMEOUT=${CHAT_BENCH_TIMEOUT:-1500}
# Other benchmarks on this 2-core machine would skew every figure: wait for them, but not for ever.
BUSY_WAIT=${CHAT_BENCH_BUSY_WAIT:-900}

what=${1:-all}
case "$what" in default | heavy | idle | all) ;; *)
    echo "usage: $0 [default|heavy|idle|all]" >&2
    exit 2
    ;;
esac

say() { printf '[bench/chat] %s\n' "$*" >&2; }

tmp=$(mktemp -d /tmp/bsn-chat-run.XXXXXX)
harness_pid=
monitor_pid=
cleanup() {
    [ -n "$monitor_pid" ] && kill "$monitor_pid" 2>/dev/null || true
    # Stop a harness still running (Ctrl-C, error): it stops its servers and Redis on SIGTERM.
    if [ -n "$harness_pid" ] && kill -0 "$harness_pid" 2>/dev/null; then kill -TERM "$harness_pid" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- dependencies
cd "$REPO"
if [ ! -x .venv/bin/gunicorn ]; then . scripts/bootstrap.sh; fi
if [ ! -d "$HARNESS/node_modules/socket.io-client" ] || [ ! -x "$HARNESS/.venv/bin/python" ]; then
    say "the harness is not set up: running its setup.sh once"
    (cd "$HARNESS" && timeout 1800 ./setup.sh)
fi

. "$REPO/bench/lib.sh"

# Samples, in the background, other benchmarks that start while ours runs (they do not wait for us).
start_monitor() {
    : >"$tmp/concurrent"
    (
        while sleep 2; do
            pgrep -fa "$BENCH_BUSY_PATTERN" | grep -v -e "$HARNESS/" -e 'loadgen/loadgen.js --config' -e 'orchestrator/bench.js' \
                -e "bench/chat/" >>"$tmp/concurrent" || true
        done
    ) &
    monitor_pid=$!
}
stop_monitor() {
    [ -n "$monitor_pid" ] && kill "$monitor_pid" 2>/dev/null && wait "$monitor_pid" 2>/dev/null || true
    monitor_pid=
    if [ -s "$tmp/concurrent" ]; then
        echo "- WARNING: other benchmarks ran during this measurement, figures are skewed:"
        sort -u "$tmp/concurrent" | cut -c1-160 | sed 's/^/  - /'
    fi
}

wait_until_idle() { bench_wait_until_idle chat "$BUSY_WAIT"; }

# --- the servers file: its cwd assumes <root>/main beside <root>/shared/bench/chat; rewrite it otherwise
servers_file=$HERE/servers.json
if [ "$(cd "$HARNESS" && cd ../../../main 2>/dev/null && pwd || true)" != "$REPO" ]; then
    servers_file=$tmp/servers.json
    .venv/bin/python - "$HERE/servers.json" "$servers_file" "$REPO" <<'EOF'
import json, sys
data = json.load(open(sys.argv[1]))
for server in data["servers"]:
    server["cwd"] = sys.argv[3]
json.dump(data, open(sys.argv[2], "w"), indent=2)
EOF
fi

mkdir -p "$OUT"
failed=0
# Which BSN was measured: others commit while benchmarks run.
revision() {
    local rev
    rev=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
    if [ -n "$(git -C "$REPO" status --porcelain -- bsn wsgi.py Procfile migrations requirements.txt 2>/dev/null)" ]; then
        rev="$rev + uncommitted changes"
    fi
    echo "$rev"
}

run_scenario() {
    local scenario=$1 flag=()
    [ "$scenario" = heavy ] && flag=(--heavy)
    wait_until_idle
    say "$scenario scenario: $SERVERS (harness $HARNESS)"
    local before
    before=$(readlink "$HARNESS/results/latest" 2>/dev/null || true)
    rev_at_start=$(revision)
    start_monitor
    set +e
    (cd "$HARNESS" && exec timeout -k 30 "$RUN_TIMEOUT" ./run.sh --servers-file "$servers_file" --servers "$SERVERS" \
        "${flag[@]}") &
    harness_pid=$!
    wait "$harness_pid"
    local rc=$?
    harness_pid=
    set -e
    local latest
    latest=$(readlink "$HARNESS/results/latest" 2>/dev/null || true)
    if [ -z "$latest" ] || [ "$latest" = "$before" ] || [ ! -f "$HARNESS/results/$latest/table.md" ]; then
        stop_monitor >&2
        say "$scenario: the harness produced no table (exit $rc)"
        failed=1
        return
    fi
    local dir=$HARNESS/results/$latest
    # The reaper writes the stored-message count once the web process is gone, just after the harness stops it.
    local log
    for log in "$dir"/bsn*.log; do
        for _ in $(seq 1 40); do grep -q 'stored messages' "$log" 2>/dev/null && break; sleep 0.25; done
    done
    mkdir -p "$OUT/$scenario"
    cp "$dir/table.md" "$dir/table.txt" "$dir/summary.json" "$OUT/$scenario/"
    cp "$dir"/bsn*.log "$OUT/$scenario/" 2>/dev/null || true
    cp "$dir/table.md" "$OUT/$scenario-table.md"
    {
        echo "# Chat benchmark, $scenario scenario ($latest)"
        echo
        echo "BSN revision: $rev_at_start"
        echo
        cat "$dir/table.md"
        echo
        .venv/bin/python "$HERE/check.py" "$dir" || failed=1
        stop_monitor
    } >"$OUT/$scenario.md"
    echo
    cat "$OUT/$scenario.md"
    echo
    [ "$rc" = 0 ] || { say "$scenario: the harness exited with $rc (a server failed; see $dir)"; failed=1; }
}

run_idle() {
    wait_until_idle
    say "idle: 1,000 authenticated /chat sockets"
    rm -f "$OUT/idle.md" "$OUT/idle.json"
    rev_at_start=$(revision)
    start_monitor
    set +e
    # --foreground: a Ctrl-C reaches idle.mjs, which then stops its server and Redis.
    timeout --foreground -k 30 900 node "$HERE/idle.mjs" --deflate --out "$OUT" >/dev/null
    local rc=$?
    set -e
    if [ ! -f "$OUT/idle.md" ] || [ "$rc" -gt 1 ]; then
        stop_monitor >&2
        say "idle: no result (exit $rc; see $OUT/idle-server.log)"
        failed=1
        return
    fi
    {
        echo "# Chat benchmark, idle connections"
        echo
        echo "BSN revision: $rev_at_start"
        echo
        cat "$OUT/idle.md"
        echo
        .venv/bin/python "$HERE/check.py" --idle "$OUT/idle.json" || failed=1
        stop_monitor
    } >"$OUT/idle-report.md"
    echo
    cat "$OUT/idle-report.md"
    echo
}

case "$what" in
default) run_scenario default ;;
heavy) run_scenario heavy ;;
idle) run_idle ;;
all)
    run_scenario default
    run_scenario heavy
    run_idle
    ;;
esac
say "results in $OUT"
exit "$failed"
