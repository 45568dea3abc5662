"""Presence state in Redis: connections, announcements, the sweep, and processes racing on one user."""

from __future__ import annotations

import threading
import time

import pytest

from bsn.extensions import redis_store
from bsn.services import presence

USER = 7


@pytest.fixture
def announced(ctx, monkeypatch):
    """The announcements made, as (user id, online, last seen) instead of published."""
    calls = []
    monkeypatch.setattr(presence, "announce", lambda user_id, online, at: calls.append((user_id, online, at)))
    return calls


def online(user_id: int) -> bool:
    return presence.online_among([user_id]) == {user_id}


def test_online_from_the_first_connection_to_the_last(announced):
    presence.connected(USER, "/chat|a")
    presence.connected(USER, "/presence|b")
    assert [(u, o) for u, o, _ in announced] == [(USER, True)]
    presence.disconnected(USER, "/chat|a")
    assert online(USER) and len(announced) == 1
    presence.disconnected(USER, "/presence|b")
    assert not online(USER)
    assert [(u, o) for u, o, _ in announced] == [(USER, True), (USER, False)]
    last_seen = float(redis_store.client.hget(presence.LAST_SEEN, str(USER)))
    assert announced[-1][2] == pytest.approx(last_seen, abs=0.001)


def test_a_repeated_disconnect_announces_nothing(announced):
    presence.connected(USER, "/chat|a")
    presence.disconnected(USER, "/chat|a")
    presence.disconnected(USER, "/chat|a")
    assert [o for _, o, _ in announced] == [True, False]


def test_the_sweep_takes_offline_only_users_without_a_fresh_connection(ctx, announced):
    stale_after = ctx.config["PRESENCE_STALE_AFTER"]
    long_ago = time.time() - stale_after - 5
    presence.connected(USER, "/chat|dead")
    presence.connected(USER + 1, "/chat|dead")
    presence.connected(USER + 1, "/chat|alive")
    announced.clear()
    client = redis_store.client
    # Both users' online scores are stale; only USER + 1 still has a connection some process refreshes.
    client.zadd(presence.CONNS.format(USER), {"/chat|dead": long_ago})
    client.zadd(presence.CONNS.format(USER + 1), {"/chat|dead": long_ago})
    client.zadd(presence.ONLINE, {str(USER): long_ago, str(USER + 1): long_ago})
    assert presence.sweep() == 1
    assert [(u, o) for u, o, _ in announced] == [(USER, False)]
    assert announced[0][2] == pytest.approx(long_ago, abs=0.001)
    assert client.zrange(presence.CONNS.format(USER + 1), 0, -1) == [b"/chat|alive"]
    assert not online(USER)


def test_processes_racing_on_one_user_never_leave_a_connected_user_offline(app, announced):
    """Two processes (threads here) connect and disconnect the same user's sockets as fast as they can.

    Whatever the interleaving, a user with a live connection is in the online set, and each change between
    offline and online is announced exactly once. (Not necessarily in order: each process publishes after
    its own script, so a client may see two changes swapped; a `query` on /presence gives the state.)
    """
    errors = []

    def churn(name: str, rounds: int) -> None:
        try:
            with app.app_context():
                for i in range(rounds):
                    presence.connected(USER, f"/chat|{name}{i}")
                    presence.disconnected(USER, f"/chat|{name}{i}")
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=churn, args=(name, 300)) for name in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors and not any(t.is_alive() for t in threads)
    assert not online(USER)
    presence.connected(USER, "/chat|last")
    assert online(USER)
    flags = [o for _, o, _ in announced]
    assert flags.count(True) == flags.count(False) + 1


def test_a_refresh_renews_every_connection_a_slice_of_users_at_a_time(ctx, monkeypatch):
    monkeypatch.setattr(presence, "REFRESH_SLICE", 3)
    executed = []
    pipeline = redis_store.client.pipeline

    def counting_pipeline(*args, **kwargs):
        pipe = pipeline(*args, **kwargs)
        run = pipe.execute
        monkeypatch.setattr(pipe, "execute", lambda *a, **k: executed.append(len(pipe.command_stack)) or run(*a, **k))
        return pipe

    monkeypatch.setattr(redis_store.client, "pipeline", counting_pipeline)
    connections = {user_id: {f"/chat|{user_id}a", f"/chat|{user_id}b"} for user_id in range(1, 8)}
    before = time.time()
    presence.refresh(connections)
    assert executed == [6, 6, 2]  # two commands a user: 3 + 3 + 1 users
    client = redis_store.client
    for user_id, members in connections.items():
        scores = dict(client.zrange(presence.CONNS.format(user_id), 0, -1, withscores=True))
        assert {m.decode() for m in scores} == members and min(scores.values()) >= before
        assert client.zscore(presence.ONLINE, str(user_id)) >= before
    presence.refresh({})
    assert executed == [6, 6, 2]  # nobody connected here: not a round trip


def test_a_connection_that_closes_during_a_refresh_is_not_brought_back(ctx, monkeypatch):
    monkeypatch.setattr(presence, "REFRESH_SLICE", 1)
    gone: set[str] = set()
    pipeline = redis_store.client.pipeline

    def closing_pipeline(*args, **kwargs):
        pipe = pipeline(*args, **kwargs)
        run = pipe.execute

        def execute(*a, **k):
            result = run(*a, **k)
            gone.add("/chat|2a")  # user 2's socket closes while user 1's slice is on the wire
            return result

        monkeypatch.setattr(pipe, "execute", execute)
        return pipe

    monkeypatch.setattr(redis_store.client, "pipeline", closing_pipeline)
    presence.refresh({1: {"/chat|1a"}, 2: {"/chat|2a"}}, alive=lambda connection: connection not in gone)
    client = redis_store.client
    assert client.zrange(presence.CONNS.format(1), 0, -1) == [b"/chat|1a"]
    assert client.zrange(presence.CONNS.format(2), 0, -1) == []
    assert client.zscore(presence.ONLINE, "2") is None


def test_the_registry_vouches_only_for_sockets_still_open_here():
    from types import SimpleNamespace

    from bsn.sockets.base import ConnectionRegistry

    registry = ConnectionRegistry()
    registry.namespaces = [
        SimpleNamespace(namespace="/chat", callers={"s1": 7}),
        SimpleNamespace(namespace="/presence", callers={"s2": 7}),
    ]
    assert registry._alive("/chat|s1") and registry._alive("/presence|s2")
    assert not registry._alive("/chat|s2") and not registry._alive("/feed|s1")
