"""Helpers shared by the benchmarks under bench/: bounded child processes, throwaway databases, gunicorn, wrk."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import psycopg

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
DEFAULT_PG = "postgresql://bsn:bsn@127.0.0.1:5432/postgres"


def run(cmd: list[str], env: dict, timeout: float, what: str) -> subprocess.CompletedProcess:
    """A bounded child process in the repository root; its output is shown only when it fails."""
    try:
        done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{what} took more than {timeout:.0f} s") from None
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-3000:]}")
    return done


def exit_on_sigterm() -> None:
    """A SIGTERM becomes SystemExit, so cleanup runs as it does on an error or Ctrl-C."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def migrate(env: dict, timeout: float = 180) -> None:
    run([sys.executable, "-m", "flask", "--app", "bsn", "db", "upgrade"], env, timeout, "flask db upgrade")


# -- the database -------------------------------------------------------------------------------------------------


def admin_url() -> str:
    return os.environ.get("BENCH_PG", DEFAULT_PG)


@contextlib.contextmanager
def database(kind: str, workdir: str, prefix: str = "bsn_bench_"):
    """A fresh, empty database URL, removed afterwards: a SQLite file, or a PostgreSQL database of its own."""
    if kind == "sqlite":
        yield "sqlite:///" + os.path.join(workdir, "bench.sqlite3")
        return
    admin = admin_url()
    name = f"{prefix}{secrets.token_hex(5)}"
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


def procfile_web_command(port: int, workers: int = 1) -> list[str]:
    """The Procfile's `web` command bound to loopback, so the benchmark follows production's server settings,
    with `workers` gevent workers (`-w`, over gunicorn.conf.py's WEB_WORKERS) whatever the caller's shell has."""
    for line in (REPO / "Procfile").read_text().splitlines():
        if line.startswith("web:"):
            argv = shlex.split(line.partition(":")[2])
            argv[1:1] = ["-w", str(workers)]
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


def shown_command(command: list[str]) -> str:
    """The server command for a report, without the venv's path."""
    return shlex.join([Path(command[0]).name, *command[1:]])


def group_rss(pgid: int) -> int:
    """Resident memory of every process in a process group (gunicorn's master and workers)."""
    total = 0
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(proc.pid) == pgid:
                total += proc.memory_info().rss
    return total


def group_cpu(pgid: int) -> float:
    """CPU seconds (user + system) used so far by the live processes of a process group."""
    total = 0.0
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(proc.pid) == pgid:
                times = proc.cpu_times()
                total += times.user + times.system
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

    def cpu_seconds(self) -> float:
        """CPU the server (master and workers) has used so far: per request, a figure that other load on the
        machine does not move, unlike req/s."""
        return group_cpu(self.process.pid)

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


# -- wrk ----------------------------------------------------------------------------------------------------------


@dataclass
class Sample:
    rps: float
    p50_ms: float
    p99_ms: float
    non2xx: int
    socket_errors: int
    raw: dict = field(default_factory=dict)  # the script's whole BENCH_RESULT, for counters of its own


def wrk(url: str, lua: Path, script_args: list[str], seconds: int, threads: int, connections: int) -> Sample:
    """One wrk run; `lua` must print a line "BENCH_RESULT {json}" as bench/auth/auth.lua does."""
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--latency", "-s", str(lua), url]
    if script_args:
        cmd += ["--", *script_args]
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
        raw=r,
    )


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


def save_report(text: str, folder: Path, name: str) -> Path:
    """Print a markdown report and keep it as bench/results/<folder>/<timestamp>-<name>.md (git-ignored)."""
    print(text)
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{datetime.datetime.now():%Y%m%d-%H%M%S}-{name}.md"
    out.write_text(text)
    print(f"written to {out.relative_to(REPO)}")
    return out
