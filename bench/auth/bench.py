"""Benchmark: GET /api/auth/user/ (bearer token) against GET /health under the Procfile's gunicorn, with wrk."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil
import psycopg

REPO = Path(__file__).resolve().parents[2]
# Run as a script, so the repository root is not on the path yet.
sys.path.insert(0, str(REPO))
from bsn.devredis import PrivateRedis, free_port  # noqa: E402

HERE = Path(__file__).resolve().parent
LUA = HERE / "auth.lua"
RESULTS = REPO / "bench" / "results" / "auth"
DEFAULT_PG = "postgresql://bsn:bsn@127.0.0.1:5432/postgres"
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


def run(cmd: list[str], env: dict, timeout: float, what: str) -> subprocess.CompletedProcess:
    """A bounded child process in the repository root; its output is shown only when it fails."""
    try:
        done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{what} took more than {timeout:.0f} s") from None
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-3000:]}")
    return done


# -- the database -------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def database(kind: str, workdir: str):
    """A fresh, empty database URL, removed afterwards: a SQLite file, or a PostgreSQL database of its own."""
    if kind == "sqlite":
        yield "sqlite:///" + os.path.join(workdir, "bench.sqlite3")
        return
    admin = os.environ.get("BENCH_PG", DEFAULT_PG)
    name = f"bsn_bench_{secrets.token_hex(5)}"
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        raise RuntimeError(f"PostgreSQL at BENCH_PG is unreachable ({exc}); is it running?") from None
    try:
        yield urllib.parse.urlsplit(admin)._replace(path="/" + name).geturl()
    finally:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            # FORCE: a server that could not be stopped cleanly must not keep the database alive.
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- the server ---------------------------------------------------------------------------------------------------


def procfile_web_command(port: int) -> list[str]:
    """The Procfile's `web` command bound to loopback, so the benchmark follows production's server settings."""
    for line in (REPO / "Procfile").read_text().splitlines():
        if line.startswith("web:"):
            argv = shlex.split(line.partition(":")[2])
            break
    else:
        raise RuntimeError("Procfile has no web line")
    if argv[0] != "gunicorn":
        raise RuntimeError(f"the web process is not gunicorn: {argv[0]}")
    for flag in ("-b", "--bind"):
        if flag in argv:
            argv[argv.index(flag) + 1] = f"127.0.0.1:{port}"
            break
    else:
        argv += ["-b", f"127.0.0.1:{port}"]
    # The venv's gunicorn, whatever PATH says.
    argv[0] = str(Path(sys.executable).parent / "gunicorn")
    return argv


def group_rss(pgid: int) -> int:
    """Resident memory of every process in a process group (gunicorn's master and workers)."""
    total = 0
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(proc.pid) == pgid:
                total += proc.memory_info().rss
    return total


class Server:
    """gunicorn in a session of its own, so that it and its workers stop together; samples their peak RSS."""

    def __init__(self, command: list[str], env: dict, log_path: str) -> None:
        self.command, self.env, self.log_path = command, env, log_path
        self.process: subprocess.Popen | None = None
        self.peak_rss = 0
        self._stop_sampling = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def start(self) -> None:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.command, cwd=REPO, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True,
            )  # fmt: skip
        self._sampler.start()

    def _sample(self) -> None:
        while not self._stop_sampling.wait(0.25):
            self.peak_rss = max(self.peak_rss, group_rss(self.process.pid))

    def log_tail(self) -> str:
        with contextlib.suppress(OSError), open(self.log_path, errors="replace") as log:
            return log.read()[-3000:]
        return ""

    def wait_healthy(self, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not answer {url} within {timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.1)

    def stop(self) -> None:
        self._stop_sampling.set()
        if self._sampler.is_alive():
            self._sampler.join(10)
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            # The master is still alive, so its group id still names only this server.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


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


@dataclass
class Sample:
    rps: float
    p50_ms: float
    p99_ms: float
    non2xx: int
    socket_errors: int


def wrk(url: str, tokens: str | None, seconds: int, args: argparse.Namespace) -> Sample:
    cmd = ["wrk", "-t", str(args.threads), "-c", str(args.connections), "-d", f"{seconds}s", "--latency"]
    cmd += ["-s", str(LUA), url]
    if tokens:
        cmd += ["--", tokens]
    out = run(cmd, dict(os.environ), seconds + 30, f"wrk {url}").stdout
    line = next((ln for ln in out.splitlines() if ln.startswith("BENCH_RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no BENCH_RESULT line:\n{out}")
    r = json.loads(line.partition(" ")[2])
    return Sample(
        rps=r["requests"] / (r["duration_us"] / 1e6),
        p50_ms=r["p50_us"] / 1000,
        p99_ms=r["p99_us"] / 1000,
        non2xx=r["non2xx"],
        socket_errors=r["connect"] + r["read"] + r["write"] + r["timeout"],
    )


def measure(base: str, tokens: str, args: argparse.Namespace) -> dict[str, list[Sample]]:
    """Both endpoints, interleaved round by round so a drift of the machine touches both alike."""
    samples: dict[str, list[Sample]] = {HEALTH: [], AUTH: []}
    for round_no in range(1, args.rounds + 1):
        for path, token_file in ((HEALTH, None), (AUTH, tokens)):
            if args.warmup:
                wrk(base + path, token_file, args.warmup, args)
            sample = wrk(base + path, token_file, args.duration, args)
            samples[path].append(sample)
            print(
                f"round {round_no} GET {path}: {sample.rps:.0f} req/s, p50 {sample.p50_ms:.2f} ms, "
                f"p99 {sample.p99_ms:.2f} ms, non-2xx {sample.non2xx}, socket errors {sample.socket_errors}",
                file=sys.stderr,
            )
    return samples


# -- the report ---------------------------------------------------------------------------------------------------


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def git_revision() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (head or "unknown") + (" (uncommitted changes)" if dirty else "")


def report(samples: dict[str, list[Sample]], args: argparse.Namespace, command: list[str], peak_rss: int) -> str:
    health_rps = mean([s.rps for s in samples[HEALTH]])
    auth_rps = mean([s.rps for s in samples[AUTH]])
    share = auth_rps / health_rps if health_rps else 0.0
    shown = [Path(command[0]).name, *command[1:]]
    lines = [
        f"# Auth benchmark, {args.db}, {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
        "",
        f"- revision: {git_revision()}",
        f"- host: {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        f"- server: `{shlex.join(shown)}` (BSN_ENV=production, LOG_LEVEL=WARNING, rate limits raised)",
        f"- load: wrk {args.threads} threads, {args.connections} connections; {args.users} users, random token each "
        "request",
        f"- figures: mean of {args.rounds} interleaved rounds per endpoint, each {args.duration} s after a "
        f"{args.warmup} s warm-up; errors summed over the rounds",
        f"- server peak RSS (gunicorn process group): {peak_rss / 2**20:.0f} MiB",
        "- latencies are wrk's, corrected for coordinated omission: a stall also counts for the requests that a "
        "steady stream would have sent during it",
        "",
        "| endpoint | req/s | p50 ms | p99 ms | errors (non-2xx/socket) |",
        "|---|---:|---:|---:|---:|",
    ]
    for path in (HEALTH, AUTH):
        runs = samples[path]
        errors = f"{sum(s.non2xx for s in runs)}/{sum(s.socket_errors for s in runs)}"
        lines.append(
            f"| GET {path} | {mean([s.rps for s in runs]):.0f} | {mean([s.p50_ms for s in runs]):.2f} | "
            f"{mean([s.p99_ms for s in runs]):.2f} | {errors} |"
        )
    lines += ["", "Rounds: " + "; ".join(
        f"{path} " + ", ".join(f"{s.rps:.0f}" for s in samples[path]) + " req/s" for path in (HEALTH, AUTH)
    )]  # fmt: skip
    verdict = "PASS" if share >= TARGET else "FAIL"
    lines += ["", f"auth/user keeps {share * 100:.0f}% of /health's req/s (target >= {TARGET * 100:.0f}%): {verdict}"]
    return "\n".join(lines) + "\n"


# -- main ---------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: run bench/auth/run.sh, or apt-get install wrk")
    # A SIGTERM becomes SystemExit, so the cleanup below runs as it does on an error or Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

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
        run([sys.executable, "-m", "flask", "--app", "bsn", "db", "upgrade"], env, 180, "flask db upgrade")

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
        print(f"starting {shlex.join(command)} ...", file=sys.stderr)
        server.start()
        server.wait_healthy(base + HEALTH, args.start_timeout)
        with open(tokens) as handle:
            preflight(base, handle.readline().strip())

        samples = measure(base, tokens, args)
        server.stop()  # stops the RSS sampler before its peak is read
        text = report(samples, args, command, server.peak_rss)

    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{datetime.datetime.now():%Y%m%d-%H%M%S}-{args.db}.md"
    out.write_text(text)
    print(f"written to {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RuntimeError as exc:
        # Expected failures (a server that does not boot, a missing database) need their message, not a traceback.
        sys.exit(f"benchmark failed: {exc}")
