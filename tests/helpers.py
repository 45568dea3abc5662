"""Test helpers: waiting on conditions with a deadline, and real service processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass

import psutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def wait_until(condition, timeout: float = 20.0, interval: float = 0.05, message: str = "condition"):
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


def service_env(app, **extra) -> dict:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"],
        REDIS_URL=app.config["REDIS_URL"],
        BSN_INSTANCE_PATH=app.instance_path,
        PASSWORD_HASH_TIME_COST="1",
        PASSWORD_HASH_MEMORY_KIB="1024",
        PYTHONUNBUFFERED="1",
    )
    env.update({k: str(v) for k, v in extra.items()})
    return env


@contextmanager
def flask_process(app, *args: str, **env):
    """`flask --app bsn <args>` as a child process, stopped (and reaped) on exit."""
    process = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "bsn", *args],
        cwd=ROOT,
        env=service_env(app, **env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        stop(process)


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """Signal the process group; SIGKILL also reaches descendants that left the group (RQ's work horse does)."""
    if sig == signal.SIGKILL and process.poll() is None:
        for child in psutil.Process(process.pid).children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@dataclass
class WebServer:
    url: str
    process: subprocess.Popen


@contextmanager
def web_process(app, port: int | None = None, output=None, workers: int = 1, **env):
    """The production web server (gunicorn, `workers` gevent workers) on a free port; yields a WebServer.

    `output`: an open file that gets the server's stdout and stderr (its log), instead of the test's."""
    from bsn.devredis import free_port

    port = port or free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-k",
            "gevent",
            "-w",
            str(workers),
            "--no-control-socket",
            "-b",
            f"127.0.0.1:{port}",
            "wsgi:app",
        ],
        cwd=ROOT,
        env=service_env(app, LOG_LEVEL="WARNING", **env),
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=output,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(url, process), timeout=30, interval=0.1, message=f"gunicorn on {url}")
        yield WebServer(url, process)
    finally:
        stop(process)


def _answers(url: str, process: subprocess.Popen) -> bool:
    import urllib.request

    if process.poll() is not None:
        raise AssertionError(f"the web process exited with {process.returncode}")
    try:
        with urllib.request.urlopen(url + "/health", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


class SocketClient:
    """A real Socket.IO client (python-socketio over websocket) that records every event it receives."""

    def __init__(self, url: str, token: str | None, namespaces=("/chat",)) -> None:
        import threading

        import socketio

        self.events: list[tuple[str, str, object]] = []
        self._lock = threading.Lock()
        self.sio = socketio.Client(reconnection=False)
        for namespace in namespaces:
            self.sio.on("*", self._recorder(namespace), namespace=namespace)
        self.sio.connect(
            url,
            namespaces=list(namespaces),
            auth={"token": token} if token else None,
            transports=["websocket"],
            wait_timeout=10,
        )

    def _recorder(self, namespace):
        def record(event, *args):
            with self._lock:
                self.events.append((namespace, event, args[0] if args else None))

        return record

    def call(self, event, data=None, namespace="/chat", timeout=10):
        return self.sio.call(event, data, namespace=namespace, timeout=timeout)

    def emit(self, event, data=None, namespace="/chat"):
        self.sio.emit(event, data, namespace=namespace)

    def received(self, event, namespace="/chat", predicate=lambda data: True):
        with self._lock:
            return [d for ns, e, d in self.events if ns == namespace and e == event and predicate(d)]

    def wait_for(self, event, namespace="/chat", predicate=lambda data: True, count=1, timeout=15):
        return wait_until(
            lambda: (found := self.received(event, namespace, predicate)) and len(found) >= count and found,
            timeout=timeout,
            message=f"{count} {event!r} event(s) on {namespace}",
        )

    def close(self):
        self.sio.disconnect()


@contextmanager
def recorded_statements(app):
    """The SQL statements the app's engine sends while the block runs, in order (any thread)."""
    from sqlalchemy import event

    from bsn.extensions import db

    with app.app_context():
        engine = db.engine
    statements: list[str] = []

    def listener(_conn, _cursor, statement, *_args):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", listener)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", listener)


def count_queries(app, client, path: str, token: str) -> int:
    """How many SQL statements one GET of `path` sends (it must answer 200)."""
    with recorded_statements(app) as statements:
        response = client.get(path, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, response.data
    return len(statements)


def queue_behind_a_held_batch(monkeypatch, group, first, rest) -> list[int]:
    """Runs `first()` in a thread until the batch it stores in `group` (a GroupCommit) is held, then each of `rest`
    in a thread of its own until all of them wait in the group's queue; lets every batch go and joins them all.
    Returns the sizes of the batches stored meanwhile."""
    import threading

    held, sizes, store = threading.Event(), [], group._store

    def holding(batch):
        sizes.append(len(batch))
        held.wait(10)
        return store(batch)

    monkeypatch.setattr(group, "_store", holding)
    threads = [threading.Thread(target=first)]
    threads[0].start()
    try:
        wait_until(lambda: sizes, message="the first batch to be stored")
        for target in rest:
            threads.append(threading.Thread(target=target))
            threads[-1].start()
        wait_until(lambda: group.waiting == len(rest), message=f"{len(rest)} callers queued behind it")
    finally:
        held.set()
        for thread in threads:
            thread.join(timeout=10)
    return sizes


def run_jobs(app, *queue_names: str) -> int:
    """Run every queued job in this process (RQ's SimpleWorker, burst mode); returns how many ran."""
    from rq import SimpleWorker

    from bsn.extensions import redis_store
    from workers import queues

    with app.app_context():
        names = queue_names or queues.ALL
        worker = SimpleWorker([queues.queue(name) for name in names], connection=redis_store.client)
        worker.work(burst=True)
        return worker.successful_job_count + worker.failed_job_count


def record_calls(monkeypatch, owner, name: str, record=lambda args, kwargs: args) -> list:
    """Replace `owner.name` with a wrapper that still calls it and appends `record(args, kwargs)` for each call."""
    calls = []
    original = getattr(owner, name)

    def recording(*args, **kwargs):
        calls.append(record(args, kwargs))
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, recording)
    return calls
