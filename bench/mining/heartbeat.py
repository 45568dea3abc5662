"""Heartbeat benchmark: PATCH /api/mining/heartbeat/ of many live miners beside GET /health, under the Procfile web."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import random
import re
import secrets
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
from sqlalchemy import func, select

from bench.common import (
    RESULTS,
    Sample,
    Server,
    database,
    git_revision,
    mean,
    migrate,
    procfile_web_command,
    save_report,
    shown_command,
    wrk,
)
from bench.mining import seed
from bsn.actors import Caller
from bsn.clock import now
from bsn.devredis import PrivateRedis, free_port
from bsn.extensions import db
from bsn.models import MiningSession
from bsn.services import heartbeats, mining

LUA = Path(__file__).resolve().parent / "heartbeat.lua"
TARGET = 0.8
HEALTH, HEARTBEAT = "/health", "/api/mining/heartbeat/"
# A heartbeat served is a 200 that says the session goes on; the same test in Lua (wrk) and Python (preflight).
MINING_LUA = '"is_mining":%s*true'
MINING_RE = re.compile(rb'"is_mining":\s*true')
# Out of reach, so no request is throttled; the limits are still checked, their Redis work is part of the cost.
UNLIMITED = "100000000 per minute"
STATS_SAMPLE = 200  # users whose mining.stats is read after the run


def preflight(base: str, token: str) -> None:
    """One call each, so a benchmark of 401s, or of 200s saying the session stopped, is refused instead of reported."""
    request = urllib.request.Request(base + HEARTBEAT, method="PATCH", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        body = response.read()
    if not MINING_RE.search(body):
        raise RuntimeError(f"{HEARTBEAT} did not answer is_mining true for a seeded miner: {body[:500]!r}")
    try:
        urllib.request.urlopen(urllib.request.Request(base + HEARTBEAT, method="PATCH"), timeout=10).close()
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            return
    raise RuntimeError(f"{HEARTBEAT} did not answer 401 without a token: the benchmark would not measure auth")


def run_wrk(url: str, method: str, tokens: str | None, seconds: int, args: argparse.Namespace) -> Sample:
    script_args = [method, tokens or "", MINING_LUA] if tokens else [method]
    return wrk(url, LUA, script_args, seconds, args.threads, args.connections)


def measure(base: str, tokens: str, args: argparse.Namespace, server: Server, redis_pid: int):
    """Both endpoints, interleaved round by round so a drift of the machine touches both alike.

    Besides wrk's figures, the CPU the server and Redis spent per request: the load of other processes on
    the machine moves req/s, hardly the CPU a request costs.
    """
    runs = ((HEALTH, "GET", None), (HEARTBEAT, "PATCH", tokens))
    samples: dict[str, list[Sample]] = {HEALTH: [], HEARTBEAT: []}
    redis = psutil.Process(redis_pid)
    for round_no in range(1, args.rounds + 1):
        for path, method, token_file in runs:
            if args.warmup:
                run_wrk(base + path, method, token_file, args.warmup, args)
            server_cpu, redis_cpu = server.cpu_seconds(), sum(redis.cpu_times()[:2])
            sample = run_wrk(base + path, method, token_file, args.duration, args)
            requests = max(sample.raw["requests"], 1)
            sample.raw["server_cpu_us"] = 1e6 * (server.cpu_seconds() - server_cpu) / requests
            sample.raw["redis_cpu_us"] = 1e6 * (sum(redis.cpu_times()[:2]) - redis_cpu) / requests
            samples[path].append(sample)
            print(
                f"round {round_no} {method} {path}: {sample.rps:.0f} req/s, p50 {sample.p50_ms:.2f} ms, "
                f"p99 {sample.p99_ms:.2f} ms, non-2xx {sample.non2xx}, socket errors {sample.socket_errors}, "
                f"not mining {sample.raw.get('unexpected', 0)}, server CPU {sample.raw['server_cpu_us']:.0f} us/req",
                file=sys.stderr,
            )
    return samples


def after_run(user_ids: list[int]) -> dict:
    """Through the app, once the server has stopped: are the sessions still live, and did the heartbeats land?"""
    started = time.perf_counter()
    flushed = heartbeats.flush()  # what the worker's flush job would have written meanwhile
    flush_s = time.perf_counter() - started
    at = now()
    live = db.session.scalar(
        select(func.count())
        .select_from(MiningSession)
        .where(MiningSession.ended_at.is_(None), MiningSession.expires_at >= at)
    )
    renewed = db.session.scalar(
        select(func.count()).select_from(MiningSession).where(MiningSession.last_heartbeat > MiningSession.started_at)
    )
    db.session.rollback()
    sample = random.Random(7).sample(user_ids, min(STATS_SAMPLE, len(user_ids)))
    mining_now = sum(1 for user_id in sample if mining.stats(Caller(user_id))["is_mining"])
    db.session.rollback()
    return {
        "flushed": flushed,
        "flush_s": flush_s,
        "live": live,
        "renewed": renewed,
        "sampled": len(sample),
        "stats_mining": mining_now,
    }


def report(
    samples: dict[str, list[Sample]], args: argparse.Namespace, db_kind: str, command: list[str], peak_rss: int,
    timings: dict[str, float], check: dict,
) -> str:  # fmt: skip
    health_rps = mean([s.rps for s in samples[HEALTH]])
    beat_rps = mean([s.rps for s in samples[HEARTBEAT]])
    share = beat_rps / health_rps if health_rps else 0.0
    seeded = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in timings.items())
    lines = [
        f"# Mining heartbeat benchmark, {db_kind}, {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
        "",
        f"- revision: {git_revision()}",
        f"- host: {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        f"- server: `{shown_command(command)}` (BSN_ENV=production, LOG_LEVEL=WARNING, rate limits and "
        f"HEARTBEAT_RATE_LIMIT raised to {UNLIMITED})",
        f"- load: wrk {args.threads} threads, {args.connections} connections; {args.users:,} users mining, each "
        "with a live session; a random token of them each request",
        f"- seeded in bulk ({seeded}); token cache warmed as by each user's first call, so heartbeats take the "
        "one-round-trip path until AUTH_CACHE_TTL runs out",
        f"- figures: mean of {args.rounds} interleaved rounds per endpoint, each {args.duration} s after a "
        f"{args.warmup} s warm-up; errors summed over the rounds",
        f"- server peak RSS (gunicorn process group): {peak_rss / 2**20:.0f} MiB",
        "- latencies are wrk's, corrected for coordinated omission: a stall also counts for the requests that a "
        "steady stream would have sent during it",
        "",
        "| endpoint | req/s | p50 ms | p99 ms | errors (non-2xx/socket) | server CPU us/req | Redis CPU us/req |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for path, method in ((HEALTH, "GET"), (HEARTBEAT, "PATCH")):
        runs = samples[path]
        errors = f"{sum(s.non2xx for s in runs)}/{sum(s.socket_errors for s in runs)}"
        lines.append(
            f"| {method} {path} | {mean([s.rps for s in runs]):.0f} | {mean([s.p50_ms for s in runs]):.2f} | "
            f"{mean([s.p99_ms for s in runs]):.2f} | {errors} | {mean([s.raw['server_cpu_us'] for s in runs]):.0f} | "
            f"{mean([s.raw['redis_cpu_us'] for s in runs]):.0f} |"
        )
    rounds = "; ".join(f"{p} " + ", ".join(f"{s.rps:.0f}" for s in samples[p]) + " req/s" for p in (HEALTH, HEARTBEAT))
    not_mining = sum(s.raw.get("unexpected", 0) for s in samples[HEARTBEAT])
    served = sum(s.raw["requests"] for s in samples[HEARTBEAT])
    cpu = {p: mean([s.raw["server_cpu_us"] for s in samples[p]]) for p in (HEALTH, HEARTBEAT)}
    lines += [
        "",
        f"Rounds: {rounds}",
        "",
        f"Server CPU per request: a heartbeat costs {cpu[HEARTBEAT] / max(cpu[HEALTH], 1e-9):.2f}x a /health "
        f"(+{cpu[HEARTBEAT] - cpu[HEALTH]:.0f} us). The single worker is CPU-bound, so keeping 80% of /health's "
        "req/s needs <= 1.25x; unlike req/s, this ratio hardly moves with other load on the machine.",
        "",
        "After the run (through the app, server stopped):",
        "",
        f"- heartbeats measured: {served:,}; non-2xx: {sum(s.non2xx for s in samples[HEARTBEAT])}; "
        f"2xx answers not saying is_mining true: {not_mining}",
        f"- heartbeats.flush() wrote the newest buffered heartbeat of {check['flushed']:,} sessions in "
        f"{check['flush_s']:.2f} s; sessions renewed at least once: {check['renewed']:,} of {args.users:,}",
        f"- live sessions in the database: {check['live']:,} of {args.users:,}; mining.stats says mining for "
        f"{check['stats_mining']} of {check['sampled']} sampled users",
    ]
    verdict = "PASS" if share >= TARGET else "FAIL"
    lines += ["", f"heartbeat keeps {share * 100:.0f}% of /health's req/s (target >= {TARGET * 100:.0f}%): {verdict}"]
    return "\n".join(lines) + "\n"


def main(args: argparse.Namespace, db_kind: str) -> str:
    """One heartbeat benchmark on one database; returns the report (also written under bench/results/mining)."""
    with contextlib.ExitStack() as cleanup:
        workdir = tempfile.mkdtemp(prefix="bsn-bench-mining-heartbeat-")
        cleanup.callback(shutil.rmtree, workdir, ignore_errors=True)

        redis = PrivateRedis(os.path.join(workdir, "redis"), persist=False)
        cleanup.callback(redis.stop)  # registered before start: a Redis that never answers is stopped too
        redis.start()
        database_url = cleanup.enter_context(database(db_kind, workdir, prefix="bsn_bench_mining_"))

        instance = os.path.join(workdir, "instance")
        env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis.url, "BSN_INSTANCE_PATH": instance}
        print(f"migrating the {db_kind} database ...", file=sys.stderr)
        migrate(env)

        # The same settings as the server's, so the seeded sessions and the checks follow its rules.
        limits = {"RATELIMIT_USER": UNLIMITED, "RATELIMIT_ANON": UNLIMITED, "HEARTBEAT_RATE_LIMIT": UNLIMITED}
        os.environ["BSN_INSTANCE_PATH"] = instance
        app = seed.make_app(database_url, redis.url, **limits)
        cleanup.enter_context(app.app_context())
        cleanup.callback(db.engine.dispose)  # runs before the database is dropped: no connection keeps it busy

        print(f"seeding {args.users:,} users, tokens and live mining sessions ...", file=sys.stderr)
        user_ids, raws, timings = seed.seed_miners(args.users)
        tokens = os.path.join(workdir, "tokens.txt")
        with open(tokens, "w") as out:
            out.write("\n".join(raws) + "\n")
        db.session.remove()
        db.engine.dispose()  # the server gets the database to itself

        port = free_port()
        base = f"http://127.0.0.1:{port}"
        command = procfile_web_command(port)
        server_env = {
            **env,
            **limits,
            "BSN_ENV": "production",
            # Production refuses the development key; a throwaway one serves a throwaway server.
            "SECRET_KEY": secrets.token_hex(32),
            "LOG_LEVEL": "WARNING",
        }
        server = Server(command, server_env, os.path.join(workdir, "gunicorn.log"))
        cleanup.callback(server.stop)
        print(f"starting {shown_command(command)} ...", file=sys.stderr)
        server.start()
        server.wait_healthy(base + HEALTH, args.start_timeout)
        preflight(base, raws[0])

        samples = measure(base, tokens, args, server, redis.process.pid)
        server.stop()  # stops the RSS sampler before its peak is read
        check = after_run(user_ids)
        text = report(samples, args, db_kind, command, server.peak_rss, timings, check)

    save_report(text, RESULTS / "mining", f"heartbeat-{db_kind}")
    return text
