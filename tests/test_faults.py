"""Faults with real processes: Redis and PostgreSQL restarted, a worker and the web process killed mid-work."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import pytest
import requests
import socketio
from sqlalchemy import select

from bsn.devredis import PrivateRedis
from bsn.extensions import db
from bsn.models import Message, OutboxJob
from tests.conftest import auth
from tests.helpers import SocketClient, stop, wait_until, web_process

CHAT = "/chat"


class ReconnectingClient(SocketClient):
    """SocketClient with python-socketio's own reconnection on, quick enough for a test."""

    def __init__(self, url: str, token: str, namespaces=(CHAT,)) -> None:
        self.events = []
        self._lock = threading.Lock()
        self.sio = socketio.Client(reconnection=True, reconnection_delay=0.2, reconnection_delay_max=1)
        self.connects = 0
        self.sio.on("connect", self._count_connect, namespace=namespaces[0])
        for namespace in namespaces:
            self.sio.on("*", self._recorder(namespace), namespace=namespace)
        self.sio.connect(url, namespaces=list(namespaces), auth={"token": token}, transports=["websocket"])

    def _count_connect(self):
        self.connects += 1


def call(method: str, url: str, token: str | None = None, **kwargs) -> requests.Response:
    # Every call has a deadline: a fault must never turn into a hang.
    return requests.request(method, url, headers=auth(token) if token else None, timeout=15, **kwargs)


def is_envelope(response: requests.Response, status: int, code: str | None = None) -> bool:
    body = response.json()
    return (
        response.status_code == status
        and set(body) >= {"error"}
        and (code is None or body["error"]["code"] == code)
        and bool(body["error"]["message"])
        and bool(body["error"]["request_id"])
    )


def stored_messages(app, chat: int) -> list[Message]:
    with app.app_context():
        db.session.remove()
        return list(db.session.scalars(select(Message).where(Message.conversation_id == chat).order_by(Message.seq)))


# ---- Redis restarted ----


@pytest.fixture
def own_redis(tmp_path):
    """A Redis for this test alone, so stopping it disturbs no other test (empty after a restart: the worst case)."""
    server = PrivateRedis(str(tmp_path / "redis"), persist=False).start()
    yield server
    server.stop()


def test_redis_restarted_while_people_chat_and_mine(app, pair, own_redis):
    ann_id, ann = pair["ann"]
    _, ben = pair["ben"]
    chat = pair["chat"]
    settings = {"REDIS_URL": own_redis.url, "SOCKET_RATE_LIMIT": "1000 per 10 seconds"}
    with (
        web_process(app, RATELIMIT_FAIL_OPEN="true", **settings) as open_web,
        web_process(app, RATELIMIT_FAIL_OPEN="false", **settings) as closed_web,
    ):
        ann_socket = ReconnectingClient(open_web.url, ann)
        ben_socket = ReconnectingClient(closed_web.url, ben)  # across processes: both message-queue listeners
        try:
            before = ann_socket.call("send_message", {"conversation_id": chat, "body": "before", "client_id": "b1"})
            assert ben_socket.wait_for("new_message")[0]["id"] == before["id"]
            assert call("POST", open_web.url + "/api/mining/start/", ann).status_code == 200
            assert call("PATCH", open_web.url + "/api/mining/heartbeat/", ann).json()["renewed"] is True
            claimed = wait_until(
                lambda: (r := call("POST", open_web.url + "/api/mining/claim/", ann)).status_code == 200 and r.json(),
                message="something to claim",
            )
            balance = call("GET", open_web.url + "/api/tokens/balance/", ann).json()["balance"]
            assert balance == claimed["balance"]

            own_redis.stop()

            for web in (open_web, closed_web):
                assert call("GET", web.url + "/health").status_code == 200
                ready = call("GET", web.url + "/ready")
                assert is_envelope(ready, 503, "not_ready") and ready.json()["checks"]["redis"]["ok"] is False
            # Fail open: calls pass unlimited, and what they commit is committed.
            assert call("GET", open_web.url + "/api/auth/user/", ann).json()["id"] == ann_id
            during = call(
                "POST",
                f"{open_web.url}/api/conversations/{chat}/messages/",
                ann,
                json={"body": "during", "client_id": "d1"},
            )
            assert during.status_code == 201, during.text
            by_socket = {"conversation_id": chat, "body": "during by socket", "client_id": "d2"}
            assert ann_socket.call("send_message", by_socket)["body"] == "during by socket"
            # Fail closed: a clear 503, not a 500 and not a hang.
            refused = call("GET", closed_web.url + "/api/auth/user/", ben)
            assert is_envelope(refused, 503, "service_unavailable"), refused.text
            assert int(refused.headers["Retry-After"]) > 0
            refused_event = {"conversation_id": chat, "body": "never stored", "client_id": "x1"}
            assert ben_socket.call("send_message", refused_event)["error"]["code"] == "service_unavailable"
            # A post is stored and answered; its fan-out job waits in the job outbox (checked below).
            posted = call("POST", open_web.url + "/api/posts/", ann, json={"body": "posted during the outage"})
            assert posted.status_code == 201, posted.text
            # Mining needs Redis for its live sessions: a clean 503, and nothing lost (checked below).
            assert is_envelope(call("PATCH", open_web.url + "/api/mining/heartbeat/", ann), 503, "service_unavailable")

            own_redis.start()

            for web in (open_web, closed_web):
                wait_until(
                    lambda web=web: call("GET", web.url + "/ready").json()["checks"]["redis"]["ok"],
                    message="/ready to see Redis again",
                )
            assert call("GET", closed_web.url + "/api/auth/user/", ben).status_code == 200
            # Both processes drop their sockets once their message queue is back: the clients reconnect.
            wait_until(
                lambda: all(s.connects >= 2 and s.sio.connected for s in (ann_socket, ben_socket)),
                message="both sockets to reconnect",
            )
            after = ann_socket.call("send_message", {"conversation_id": chat, "body": "after", "client_id": "a1"})
            assert ben_socket.wait_for("new_message", predicate=lambda m: m["id"] == after["id"])
            synced = ben_socket.call("sync", {"conversation_id": chat, "after_seq": 0})
            assert [m["body"] for m in synced["results"]] == ["before", "during", "during by socket", "after"]

            beat = call("PATCH", open_web.url + "/api/mining/heartbeat/", ann)
            assert beat.status_code == 200 and beat.json()["renewed"] is True, beat.text
            assert call("GET", open_web.url + "/api/tokens/balance/", ann).json()["balance"] == balance
            stats = call("GET", open_web.url + "/api/mining/stats/", ann).json()
            assert stats["is_mining"] is True and stats["total_mined"] == claimed["claimed"]
        finally:
            ann_socket.close()
            ben_socket.close()
    assert [(m.body, m.client_id) for m in stored_messages(app, chat)] == [
        ("before", "b1"),
        ("during", "d1"),
        ("during by socket", "d2"),
        ("after", "a1"),
    ]
    with app.app_context():
        kept = [(job.func, job.args) for job in db.session.scalars(select(OutboxJob))]
    assert kept == [("workers.posts.fan_out_posts", [[[posted.json()["id"], ann_id]]])]


# ---- the web process killed ----


def test_web_killed_with_messages_in_flight_keeps_what_was_acked_and_retries_store_once(app, pair):
    from bsn.devredis import free_port

    _, ann = pair["ann"]
    chat = pair["chat"]
    port = free_port()
    settings = {"SOCKET_RATE_LIMIT": "1000 per 10 seconds"}
    acks: dict[str, dict] = {}
    client_ids = [f"k{i}" for i in range(80)]
    with web_process(app, port=port, **settings) as web:
        socket = SocketClient(web.url, ann)
        for client_id in client_ids[:3]:
            acks[client_id] = socket.call(
                "send_message", {"conversation_id": chat, "body": client_id, "client_id": client_id}
            )
        for client_id in client_ids[3:]:
            socket.sio.emit(
                "send_message",
                {"conversation_id": chat, "body": client_id, "client_id": client_id},
                namespace=CHAT,
                callback=lambda ack, client_id=client_id: acks.setdefault(client_id, ack),
            )
        # Killed as soon as the burst is being answered: the rest is in flight, stored or not.
        wait_until(lambda: len(acks) > 3, interval=0.005, message="a first ack of the burst")
        stop(web.process, signal.SIGKILL)
        socket.sio.eio.disconnect(abort=True)
    acked = dict(acks)
    assert len(acked) < len(client_ids), "the kill came too late to leave anything in flight"
    stored = {m.client_id: m for m in stored_messages(app, chat)}
    for client_id, ack in acked.items():
        assert stored[client_id].id == ack["id"] and stored[client_id].seq == ack["seq"]

    with web_process(app, port=port, **settings) as web:
        socket = SocketClient(web.url, ann)
        try:
            # The client retries its whole outbox at once: everything it has no ack for, and one it has (a lost
            # ack looks the same to it).
            outbox = [c for c in client_ids if c not in acked] + [client_ids[0]]
            retried: dict[str, dict] = {}
            for client_id in outbox:
                socket.sio.emit(
                    "send_message",
                    {"conversation_id": chat, "body": client_id, "client_id": client_id},
                    namespace=CHAT,
                    callback=lambda ack, client_id=client_id: retried.setdefault(client_id, ack),
                )
            wait_until(lambda: len(retried) == len(outbox), timeout=60, message="every retry to be acked")
            assert all(retried[c]["body"] == c for c in outbox), retried
            assert retried[client_ids[0]]["id"] == acked[client_ids[0]]["id"]
        finally:
            socket.close()
    messages = stored_messages(app, chat)
    assert sorted(m.client_id for m in messages) == sorted(client_ids)  # each exactly once
    assert [m.seq for m in messages] == list(range(1, len(client_ids) + 1))  # and no gap in seq


# ---- a worker killed ----

FAST_RECOVERY = {
    # Notice a dead job within seconds, not RQ's minutes.
    "JOB_MONITORING_INTERVAL": 1,
    "JOB_ABANDON_GRACE": 1,
    "WORKER_MAINTENANCE_INTERVAL": 1,
    "WORKER_TTL": 17,
}


def test_a_job_of_a_worker_killed_mid_job_is_finished_by_the_surviving_worker(app, ctx, make_user):
    from rq import Worker

    from bsn.extensions import redis_store
    from bsn.models import LedgerEntry
    from bsn.services import tokens
    from tests.helpers import flask_process
    from workers import queues

    user_id, _ = make_user()
    client = redis_store.client
    job = queues.enqueue("tests.jobs.grant_once", user_id, "survivor", timeout=60, retries=1)
    with flask_process(app, "bsn", "worker", **FAST_RECOVERY) as doomed:
        wait_until(lambda: client.get("test:survivor:started"), message="the job to start")
        with flask_process(app, "bsn", "worker", **FAST_RECOVERY) as survivor:
            wait_until(
                lambda: {w.pid for w in Worker.all(connection=client)} >= {doomed.pid, survivor.pid},
                message="the second worker to register",
            )
            job.refresh()
            assert job.worker_name == next(w.name for w in Worker.all(connection=client) if w.pid == doomed.pid)
            stop(doomed, signal.SIGKILL)  # the worker and its work horse, mid-transaction
            client.set("test:survivor:go", 1)
            wait_until(lambda: job.get_status(refresh=True) == "finished", timeout=60, message="the job to finish")
    assert job.return_value() == "granted"
    assert int(client.get("test:survivor:started")) == 2
    db.session.rollback()
    assert db.session.scalars(select(LedgerEntry.reference)).all() == ["survivor"]
    assert tokens.balance(user_id) == 100_000_000


# ---- PostgreSQL restarted ----


def _postgres_bin() -> str:
    """BSN_TEST_POSTGRES_BIN, else Debian's newest /usr/lib/postgresql/<version>/bin, else pg_ctl's on PATH."""
    explicit = os.environ.get("BSN_TEST_POSTGRES_BIN")
    if explicit:
        return explicit
    import glob

    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    found = debian[-1] if debian else shutil.which("pg_ctl")
    return os.path.dirname(found) if found else "/usr/lib/postgresql/15/bin"


POSTGRES_BIN = _postgres_bin()


class PrivatePostgres:
    """A throwaway PostgreSQL cluster on a free port, so restarting it disturbs no other test.

    As root, the server runs as the `postgres` user (PostgreSQL refuses root), in a directory it owns.
    """

    def __init__(self) -> None:
        from bsn.devredis import free_port

        self.port = free_port()
        self.directory = tempfile.mkdtemp(prefix="bsn-pg-")
        self.data = os.path.join(self.directory, "data")
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            import pwd

            account = pwd.getpwnam("postgres")
            os.chown(self.directory, account.pw_uid, account.pw_gid)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://bsn@127.0.0.1:{self.port}/postgres"

    def _run(self, program: str, *args: str) -> None:
        command = [os.path.join(POSTGRES_BIN, program), *args]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{program} failed: {result.stdout}{result.stderr}{self._log_tail()}")

    def _log_tail(self) -> str:
        log = os.path.join(self.directory, "server.log")
        if not os.path.exists(log):
            return ""
        with open(log) as handle:
            return handle.read()[-2000:]

    def init(self) -> PrivatePostgres:
        self._run("initdb", "-D", self.data, "-U", "bsn", "-A", "trust", "--no-sync", "-E", "UTF8", "--no-locale")
        return self

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories= -c fsync=off"
        self._run(
            "pg_ctl", "-D", self.data, "-l", os.path.join(self.directory, "server.log"), "-o", options, "-w", "start"
        )

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", self.data, "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        with contextlib.suppress(RuntimeError):  # not running
            self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture
def private_postgres():
    if not os.access(os.path.join(POSTGRES_BIN, "pg_ctl"), os.X_OK):
        message = f"no PostgreSQL server binaries in {POSTGRES_BIN} (BSN_TEST_POSTGRES_BIN)"
        if os.environ.get("BSN_REQUIRE_POSTGRES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    server = PrivatePostgres().init()
    server.start()
    yield server
    server.destroy()


@pytest.fixture
def postgres_app(private_postgres, own_redis):
    """An app of its own on the private cluster; independent of the per-backend `app`, so this runs once."""
    from flask_migrate import upgrade

    from bsn import create_app
    from tests.conftest import TEST_SETTINGS

    application = create_app(
        {**TEST_SETTINGS, "SQLALCHEMY_DATABASE_URI": private_postgres.url, "REDIS_URL": own_redis.url}
    )
    application.instance_path = tempfile.mkdtemp(prefix="bsn-instance-")
    with application.app_context():
        upgrade()
    yield application
    with application.app_context():
        db.session.remove()
        db.engine.dispose()
    shutil.rmtree(application.instance_path, ignore_errors=True)


class Traffic:
    """Posts written back to back from a thread; records when each call started and what it answered."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token
        self.results: list[tuple[float, int, dict | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            started = time.monotonic()
            try:
                response = call("POST", self.url + "/api/posts/", self.token, json={"body": f"post {n}"})
                self.results.append((started, response.status_code, response))
            except requests.RequestException as exc:  # a hang (timeout) or a dropped connection
                self.results.append((started, 0, exc))

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(30)

    def since(self, moment: float) -> list:
        return [r for r in list(self.results) if r[0] >= moment]


def test_postgresql_restarted_pooled_connections_recover_without_restarting_the_web(postgres_app, private_postgres):
    from concurrent.futures import ThreadPoolExecutor

    from bsn.models import Post
    from bsn.services import accounts

    with postgres_app.app_context():
        user = accounts.register("poster", "poster@example.com", "correct horse battery")
        token = accounts.issue_token(user)
    with web_process(postgres_app, RATELIMIT_USER="100000 per minute") as web:

        def post(body: str) -> requests.Response:
            return call("POST", web.url + "/api/posts/", token, json={"body": body})

        def burst(prefix: str) -> list[int]:
            # Concurrent calls: several pooled connections are checked out, not just one.
            with ThreadPoolExecutor(6) as pool:
                return [r.status_code for r in pool.map(post, [f"{prefix} {i}" for i in range(12)])]

        assert burst("warm") == [201] * 12

        # 1. A restart while idle: every pooled connection is dead, and the very next calls must succeed.
        private_postgres.stop()
        private_postgres.start()
        assert post("first after restart").status_code == 201
        assert burst("after restart") == [201] * 12

        # 2. An outage under traffic: calls fail fast with the 503 envelope, and succeed again once it is back.
        with Traffic(web.url, token) as traffic:
            wait_until(lambda: len(traffic.results) > 5, message="traffic")
            private_postgres.stop()
            wait_until(lambda: any(status == 503 for _, status, _ in traffic.results), message="a 503 while down")
            private_postgres.start()
            back = time.monotonic()
            wait_until(lambda: len([r for r in traffic.since(back) if r[1] == 201]) >= 10, message="traffic to recover")
        results = list(traffic.results)
        assert {status for _, status, _ in results} <= {201, 503}, [
            (s, r) for _, s, r in results if s not in (201, 503)
        ]
        assert all(is_envelope(r, 503, "service_unavailable") for _, s, r in results if s == 503)
        assert all(status == 201 for started, status, _ in results if started >= back)
        assert call("GET", web.url + "/ready").json()["checks"]["database"] == {"ok": True}

    acked = {r.json()["id"] for _, s, r in results if s == 201}
    with postgres_app.app_context():
        stored = set(db.session.scalars(select(Post.id)))
    assert acked <= stored  # every post answered 201 was committed


def test_worker_and_scheduler_outlive_a_redis_restart_that_lost_everything(app, own_redis):
    """Redis comes back empty: the worker registers again, the schedule is rebuilt, periodic jobs run again."""
    import redis
    from rq import Worker
    from rq_scheduler import Scheduler

    from tests.helpers import flask_process
    from workers import periodic, schedule
    from workers.runtime import PERIODIC_PREFIX

    connection = redis.Redis.from_url(own_redis.url)
    expected = {PERIODIC_PREFIX + p.id for p in schedule.active(app.config)}
    settings = {"REDIS_URL": own_redis.url, "SCHEDULER_INTERVAL": 1, **FAST_RECOVERY}

    def healthy() -> bool:
        scheduled = {job.id for job in Scheduler(connection=connection).get_jobs()}
        return bool(Worker.all(connection=connection)) and scheduled == expected

    def swept() -> bool:
        record = {k.decode(): v for k, v in connection.hgetall(periodic.RECORD_KEY.format("mining-sweep")).items()}
        return "last_success" in record

    with (
        flask_process(app, "bsn", "scheduler", **settings) as scheduler,
        flask_process(app, "bsn", "worker", **settings) as worker,
    ):
        wait_until(lambda: healthy() and swept(), timeout=30, message="worker, schedule and a first sweep")
        own_redis.stop()
        own_redis.start()
        wait_until(lambda: healthy() and swept(), timeout=30, message="worker, schedule and a sweep after the restart")
        assert scheduler.poll() is None and worker.poll() is None
