"""Several web processes on one Redis: messages cross processes, and a killed process's users go offline."""

import itertools
import signal

import requests

from tests.conftest import auth
from tests.helpers import SocketClient, flask_process, stop, web_process

FAST_PRESENCE = {"PRESENCE_REFRESH_INTERVAL": 1, "PRESENCE_STALE_AFTER": 4, "PRESENCE_SWEEP_INTERVAL": 2}


def test_a_client_of_process_a_and_a_client_of_process_b_talk(app, pair):
    with web_process(app) as a, web_process(app) as b:
        ann = SocketClient(a.url, pair["ann"][1])
        ben = SocketClient(b.url, pair["ben"][1])
        try:
            sent = ann.call("send_message", {"conversation_id": pair["chat"], "body": "across", "client_id": "x1"})
            assert ben.wait_for("new_message")[0]["id"] == sent["id"]
            reply = ben.call("send_message", {"conversation_id": pair["chat"], "body": "back"})
            assert ann.wait_for("new_message", predicate=lambda m: m["id"] == reply["id"])
        finally:
            ann.close()
            ben.close()


def test_users_of_a_killed_process_go_offline_within_60_seconds(app, pair):
    with (
        web_process(app, **FAST_PRESENCE) as survivor,
        flask_process(app, "bsn", "scheduler", SCHEDULER_INTERVAL=1, **FAST_PRESENCE),
        flask_process(app, "bsn", "worker", **FAST_PRESENCE),
    ):
        ann = SocketClient(survivor.url, pair["ann"][1], ("/presence",))
        try:
            with web_process(app, **FAST_PRESENCE) as doomed:
                ben = SocketClient(doomed.url, pair["ben"][1], ("/presence",))
                answer = ann.call("query", {"user_ids": [pair["ben"][0]]}, namespace="/presence")
                assert answer["results"][0]["online"] is True
                stop(doomed.process, signal.SIGKILL)  # no disconnect event will ever come from it
                offline = ann.wait_for(
                    "presence", "/presence", lambda p: p["user_id"] == pair["ben"][0] and not p["online"], timeout=60
                )
                assert offline[0]["last_seen"].endswith("Z")
                ben.sio.eio.disconnect(abort=True)
        finally:
            ann.close()


def test_a_worker_publishes_through_the_same_message_queue(app, client, make_user, monkeypatch):
    """The sweep runs in an RQ worker process; its mining_stopped reaches a socket on a web process."""
    from tests.helpers import wait_until
    from workers import queues

    monkeypatch.setitem(app.config, "HEARTBEAT_TIMEOUT", 1)
    _, token = make_user("miner")
    with web_process(app) as web, flask_process(app, "bsn", "worker"):
        listener = SocketClient(web.url, token, ("/notifications",))
        try:
            assert client.post("/api/mining/start/", headers=auth(token)).status_code == 200
            wait_until(lambda: not client.get("/api/mining/stats/", headers=auth(token)).get_json()["is_mining"])
            with app.app_context():
                queues.enqueue("workers.mining.sweep", queue_name=queues.HIGH)
            stopped = listener.wait_for("mining_stopped", "/notifications")
            assert stopped[0]["reason"] == "heartbeat_timeout"
        finally:
            listener.close()


def test_a_post_made_on_a_web_process_reaches_a_follower_through_a_worker(app, client, make_user):
    """The web process enqueues the fan-out and moves the cache generation in its batched round trip."""
    from bsn import cache
    from bsn.extensions import redis_store

    author_id, author = make_user("writer")
    _, reader = make_user("reader")
    assert client.post(f"/api/users/{author_id}/follow/", headers=auth(reader)).status_code == 200
    with app.app_context():
        generation = redis_store.client.get(cache.GEN)
    with web_process(app) as web, flask_process(app, "bsn", "worker"):
        listener = SocketClient(web.url, reader, ("/feed",))
        try:
            created = requests.post(web.url + "/api/posts/", json={"body": "news"}, headers=auth(author), timeout=10)
            assert created.status_code == 201, created.text
            told = listener.wait_for("post_created", "/feed")
            assert told[0]["post_id"] == created.json()["id"]
            with app.app_context():
                assert redis_store.client.get(cache.GEN) != generation
        finally:
            listener.close()


def _worker_of(client: SocketClient, workers) -> int:
    """The pid of the gunicorn worker that holds this client's websocket."""
    port = client.sio.eio.ws.sock.getsockname()[1]
    return next(w.pid for w in workers if any(c.raddr and c.raddr.port == port for c in w.net_connections("tcp")))


def test_two_workers_of_one_web_process_carry_messages_between_their_sockets(app, pair):
    """`-w 2`: gunicorn's workers share one port and one Redis queue; polling is refused at the handshake."""
    import psutil

    from tests.helpers import wait_until

    with web_process(app, workers=2) as web:
        workers = wait_until(lambda: len(kids := psutil.Process(web.process.pid).children()) == 2 and kids)
        # No WEB_WORKERS was given: the app learnt the count from gunicorn (gunicorn.conf.py).
        refused = requests.get(f"{web.url}/socket.io/?EIO=4&transport=polling", timeout=5)
        assert refused.status_code == 400 and "Invalid transport" in refused.text
        placed: dict[tuple[str, int], SocketClient] = {}
        names = itertools.cycle(["ann", "ben"])

        def one_more():
            # Which worker accepts a connection is the kernel's choice (and a worker still starting takes none):
            # connect until each user has a socket on a different worker than the other's.
            name = next(names)
            client = SocketClient(web.url, pair[name][1])
            key = (name, _worker_of(client, workers))
            if key in placed:
                client.close()
            else:
                placed[key] = client
            return next(
                ((a, b) for (n, wa), a in placed.items() for (m, wb), b in placed.items() if n < m and wa != wb),
                None,
            )

        try:
            ann, ben = wait_until(one_more, timeout=30, interval=0, message="a socket on each worker")
            sent = ann.call("send_message", {"conversation_id": pair["chat"], "body": "between workers"})
            assert ben.wait_for("new_message", predicate=lambda m: m["id"] == sent["id"])
            reply = ben.call("send_message", {"conversation_id": pair["chat"], "body": "and back"})
            assert ann.wait_for("new_message", predicate=lambda m: m["id"] == reply["id"])
        finally:
            for client in placed.values():
                client.close()


def test_one_worker_keeps_long_polling_and_fewer_than_one_is_refused(app, client, monkeypatch):
    import subprocess
    import sys

    import pytest

    from bsn.config import load_settings
    from tests.helpers import ROOT, service_env

    assert app.config["WEB_WORKERS"] == 1
    assert client.get("/socket.io/?EIO=4&transport=polling").status_code == 200
    monkeypatch.setenv("WEB_WORKERS", "0")
    with pytest.raises(RuntimeError, match="WEB_WORKERS must be at least 1"):
        load_settings("/tmp")
    # gunicorn itself takes -w 0 (a master with no workers); gunicorn.conf.py stops it at once.
    started = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-k", "gevent", "-w", "0", "-b", "127.0.0.1:0", "wsgi:app"],
        cwd=ROOT, env=service_env(app), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert started.returncode != 0 and "needs at least 1 worker, got -w 0" in started.stderr


def test_the_procfile_web_dyno_runs_web_workers_workers(app):
    """The Procfile's web line, as the dyno's shell runs it: gunicorn.conf.py takes the count from WEB_WORKERS."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tests.helpers import ROOT, service_env

    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"  # the venv's gunicorn, as on a dyno
    line = next(x for x in Path(ROOT, "Procfile").read_text().splitlines() if x.startswith("web:"))
    command = line.partition(":")[2] + " --print-config"

    def workers(**env) -> str:
        env = service_env(app, PATH=path, **env)
        shown = subprocess.run(command, shell=True, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        return next(x.split("=")[1].strip() for x in shown.stdout.splitlines() if x.startswith("workers "))

    assert workers(WEB_WORKERS="") == "1"
    assert workers(WEB_WORKERS="2") == "2"


def test_the_web_process_collects_young_garbage_at_web_gc_threshold(app):
    import gc
    import subprocess
    import sys

    from tests.helpers import ROOT, service_env

    probe = "import gc, wsgi; print(*gc.get_threshold())"
    older = " ".join(str(t) for t in gc.get_threshold()[1:])  # the interpreter's own, left as they are
    for setting, expected in (({}, f"10000 {older}"), ({"WEB_GC_THRESHOLD": 2500}, f"2500 {older}")):
        shown = subprocess.run(
            [sys.executable, "-c", probe], cwd=ROOT, env=service_env(app, **setting), capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.split("\n")[-2] == expected
