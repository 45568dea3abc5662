"""Benchmark: GET /api/auth/user/ (bearer token) against GET /health under the Procfile's gunicorn, with wrk."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import secrets
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
# Run as a script, so the repository root is not on the path yet; and the script's own folder must leave it,
# or this file, bench.py, would shadow the bench package.
sys.path[:] = [str(REPO)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]
import psutil  # noqa: E402

from bench.common import (  # noqa: E402
    RESULTS,
    Sample,
    Server,
    database,
    exit_on_sigterm,
    git_revision,
    mean,
    migrate,
    procfile_web_command,
    run,
    save_report,
    shown_command,
    wrk,
)
from bsn.devredis import PrivateRedis, free_port  # noqa: E402

LUA = HERE / "auth.lua"
TARGET = 0.5
HEALTH, AUTH = "/health", "/api/auth/user/"

# Seeds users and tokens through the service's own code, inside the app context; argv: count, tokens file.
SEED = """
import sys
from bsn import create_app
from bsn.services import accounts

count, path = int(sys.argv[1]), sys.argv[2]
with create_app().app_context(), open(path, "w") as out:
    for i in range(count):
        user = accounts.register(f"bench{i:05d}", f"bench{i:05d}@example.com", "Bench-pass-7391")
        out.write(accounts.issue_token(user) + "\\n")
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite", help="database (default sqlite)")
    parser.add_argument("--duration", type=int, default=10, help="seconds of each measured wrk run (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up before each measured run (default 2)")
    parser.add_argument("--connections", type=int, default=10, help="wrk connections (default 10)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of both endpoints (default 2)")
    parser.add_argument("--users", type=int, default=100, help="users, each with a token (default 100)")
    parser.add_argument("--start-timeout", type=float, default=60, help="seconds for gunicorn to answer /health")
    args = parser.parse_args(argv)
    if min(args.duration, args.connections, args.threads, args.rounds, args.users) < 1 or args.warmup < 0:
        parser.error("--duration, --connections, --threads, --rounds and --users must be >= 1, --warmup >= 0")
    if args.connections < args.threads:
        parser.error("wrk needs --connections >= --threads")
    return args


def preflight(base: str, token: str) -> None:
    """One call each, so a benchmark of 401s or 404s is refused instead of reported."""
    request = urllib.request.Request(base + AUTH, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        body = json.load(response)
    if not str(body.get("username", "")).startswith("bench"):
        raise RuntimeError(f"{AUTH} did not answer the seeded user: {body}")
    try:
        urllib.request.urlopen(base + AUTH, timeout=10).close()
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            return
    raise RuntimeError(f"{AUTH} did not answer 401 without a token: the benchmark would not measure authentication")


# -- wrk ----------------------------------------------------------------------------------------------------------


def wrk_auth(url: str, tokens: str | None, seconds: int, args: argparse.Namespace) -> Sample:
    return wrk(url, LUA, [tokens] if tokens else [], seconds, args.threads, args.connections)


def measure(base: str, tokens: str, args: argparse.Namespace, server: Server, redis_pid: int):
    """Both endpoints, interleaved round by round so a drift of the machine touches both alike.

    Besides wrk's figures, the CPU the server and Redis spent per request: other load on the machine
    moves req/s far more than the CPU a request costs.
    """
    samples: dict[str, list[Sample]] = {HEALTH: [], AUTH: []}
    redis = psutil.Process(redis_pid)
    for round_no in range(1, args.rounds + 1):
        for path, token_file in ((HEALTH, None), (AUTH, tokens)):
            if args.warmup:
                wrk_auth(base + path, token_file, args.warmup, args)
            server_cpu, redis_cpu = server.cpu_seconds(), sum(redis.cpu_times()[:2])
            sample = wrk_auth(base + path, token_file, args.duration, args)
            requests = max(sample.raw["requests"], 1)
            sample.raw["server_cpu_us"] = 1e6 * (server.cpu_seconds() - server_cpu) / requests
            sample.raw["redis_cpu_us"] = 1e6 * (sum(redis.cpu_times()[:2]) - redis_cpu) / requests
            samples[path].append(sample)
            print(
                f"round {round_no} GET {path}: {sample.rps:.0f} req/s, p50 {sample.p50_ms:.2f} ms, "
                f"p99 {sample.p99_ms:.2f} ms, non-2xx {sample.non2xx}, socket errors {sample.socket_errors}, "
                f"server CPU {sample.raw['server_cpu_us']:.0f} us/req",
                file=sys.stderr,
            )
    return samples


# -- the report ---------------------------------------------------------------------------------------------------


def report(samples: dict[str, list[Sample]], args: argparse.Namespace, command: list[str], peak_rss: int) -> str:
    health_rps = mean([s.rps for s in samples[HEALTH]])
    auth_rps = mean([s.rps for s in samples[AUTH]])
    share = auth_rps / health_rps if health_rps else 0.0
    lines = [
        f"# Auth benchmark, {args.db}, {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
        "",
        f"- revision: {git_revision()}",
        f"- host: {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        f"- server: `{shown_command(command)}` (BSN_ENV=production, LOG_LEVEL=WARNING, rate limits raised)",
        f"- load: wrk {args.threads} threads, {args.connections} connections; {args.users} users, random token each "
        "request",
        f"- figures: mean of {args.rounds} interleaved rounds per endpoint, each {args.duration} s after a "
        f"{args.warmup} s warm-up; errors summed over the rounds",
        f"- server peak RSS (gunicorn process group): {peak_rss / 2**20:.0f} MiB",
        "- latencies are wrk's, corrected for coordinated omission: a stall also counts for the requests that a "
        "steady stream would have sent during it",
        "",
        f"- load average at the end (1/5/15 min): {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        "",
        "| endpoint | req/s | p50 ms | p99 ms | errors (non-2xx/socket) | server CPU us/req | Redis CPU us/req |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for path in (HEALTH, AUTH):
        runs = samples[path]
        errors = f"{sum(s.non2xx for s in runs)}/{sum(s.socket_errors for s in runs)}"
        lines.append(
            f"| GET {path} | {mean([s.rps for s in runs]):.0f} | {mean([s.p50_ms for s in runs]):.2f} | "
            f"{mean([s.p99_ms for s in runs]):.2f} | {errors} | {mean([s.raw['server_cpu_us'] for s in runs]):.0f} | "
            f"{mean([s.raw['redis_cpu_us'] for s in runs]):.0f} |"
        )
    lines += ["", "Rounds: " + "; ".join(
        f"{path} " + ", ".join(f"{s.rps:.0f}" for s in samples[path]) + " req/s" for path in (HEALTH, AUTH)
    )]  # fmt: skip
    cpu = {path: mean([s.raw["server_cpu_us"] for s in samples[path]]) for path in (HEALTH, AUTH)}
    lines += [
        "",
        f"Server CPU per request: auth/user costs {cpu[AUTH] / max(cpu[HEALTH], 1e-9):.2f}x a /health "
        f"(+{cpu[AUTH] - cpu[HEALTH]:.0f} us). The single worker is CPU-bound, so keeping 50% of /health's req/s "
        "needs <= 2x; unlike req/s, this ratio hardly moves with other load on the machine.",
    ]
    verdict = "PASS" if share >= TARGET else "FAIL"
    lines += ["", f"auth/user keeps {share * 100:.0f}% of /health's req/s (target >= {TARGET * 100:.0f}%): {verdict}"]
    return "\n".join(lines) + "\n"


# -- main ---------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: run bench/auth/run.sh, or apt-get install wrk")
    # A SIGTERM becomes SystemExit, so the cleanup below runs as it does on an error or Ctrl-C.
    exit_on_sigterm()

    with contextlib.ExitStack() as cleanup:
        workdir = tempfile.mkdtemp(prefix="bsn-bench-auth-")
        cleanup.callback(shutil.rmtree, workdir, ignore_errors=True)

        redis = PrivateRedis(os.path.join(workdir, "redis"), persist=False)
        cleanup.callback(redis.stop)  # registered before start: a Redis that never answers is stopped too
        redis.start()
        database_url = cleanup.enter_context(database(args.db, workdir))

        env = dict(os.environ)
        env.update(
            DATABASE_URL=database_url,
            REDIS_URL=redis.url,
            BSN_INSTANCE_PATH=os.path.join(workdir, "instance"),
        )
        print(f"migrating the {args.db} database ...", file=sys.stderr)
        migrate(env)

        print(f"seeding {args.users} users and tokens ...", file=sys.stderr)
        tokens = os.path.join(workdir, "tokens.txt")
        # Cheap hashing only to seed quickly: no request of the benchmark hashes a password.
        seed_env = {**env, "PASSWORD_HASH_TIME_COST": "1", "PASSWORD_HASH_MEMORY_KIB": "1024"}
        run([sys.executable, "-c", SEED, str(args.users), tokens], seed_env, 300, "seeding users")

        port = free_port()
        base = f"http://127.0.0.1:{port}"
        command = procfile_web_command(port)
        server_env = {
            **env,
            "BSN_ENV": "production",
            # Production refuses the development key; a throwaway one serves a throwaway server.
            "SECRET_KEY": secrets.token_hex(32),
            "LOG_LEVEL": "WARNING",
            # The limits stay enforced (their Redis calls are part of the cost) but never throttle the load.
            "RATELIMIT_USER": "10000000 per minute",
            "RATELIMIT_ANON": "10000000 per minute",
        }
        server = Server(command, server_env, os.path.join(workdir, "gunicorn.log"))
        cleanup.callback(server.stop)
        print(f"starting {shown_command(command)} ...", file=sys.stderr)
        server.start()
        server.wait_healthy(base + HEALTH, args.start_timeout)
        with open(tokens) as handle:
            preflight(base, handle.readline().strip())

        samples = measure(base, tokens, args, server, redis.process.pid)
        server.stop()  # stops the RSS sampler before its peak is read
        text = report(samples, args, command, server.peak_rss)

    save_report(text, RESULTS / "auth", args.db)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RuntimeError as exc:
        # Expected failures (a server that does not boot, a missing database) need their message, not a traceback.
        sys.exit(f"benchmark failed: {exc}")
