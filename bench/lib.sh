# Shell helpers the benchmark entry points share (sourced, not run): waiting for a quiet machine, installing wrk.

# Anything that loads this 2-core machine the way a benchmark does: every figure taken beside it is skewed.
BENCH_BUSY_PATTERN='(^|/)wrk |loadgen\.js|bench/(auth|mining|chat|rest|soak)/|orchestrator/bench\.py'

# bench_wait_until_idle OWN MAX_SECONDS: wait until no other benchmark runs (OWN, e.g. "chat", names the
# caller's own folder, whose processes do not count), but at most MAX_SECONDS; then go on and say so.
bench_wait_until_idle() {
    local own=$1 max=$2 waited=0 busy
    while busy=$(pgrep -fa "$BENCH_BUSY_PATTERN" | grep -v -e "bench/$own/" -e "^$$ " || true) && [ -n "$busy" ]; do
        if [ "$waited" -ge "$max" ]; then
            echo "[bench/$own] another benchmark is still running after ${max}s; measuring anyway (figures will be skewed):" >&2
            printf '%s\n' "$busy" >&2
            return 0
        fi
        if [ "$waited" = 0 ]; then
            echo "[bench/$own] waiting for another benchmark to finish (at most ${max}s):" >&2
            printf '%s\n' "$busy" >&2
        fi
        sleep 15
        waited=$((waited + 15))
    done
}

# bench_ensure_wrk: install wrk with apt when it is missing (as root), else explain and fail.
bench_ensure_wrk() {
    command -v wrk >/dev/null && return 0
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        echo "wrk is missing: install it (apt-get install wrk) or run as root" >&2
        return 1
    fi
    # Refresh the package lists only when they are too old to find wrk: an update is slow.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
}
