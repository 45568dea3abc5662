"""Socket fuzzing: random and malformed payloads for every event of every namespace, against a real web process."""

from __future__ import annotations

import contextlib
import json
import os
import random
import string
import time
import urllib.request
from dataclasses import dataclass, field

import psutil
import pytest
import socketio as socketio_client
from marshmallow import fields as mfields
from sqlalchemy import func, select

from bsn.sockets import NAMESPACES
from tests.conftest import auth
from tests.helpers import ROOT, SocketClient, wait_until, web_process

SEED = 20261121
# Events a client may never trigger by name: python-socketio's own connection events.
RESERVED = {"connect", "disconnect"}
# Every namespace's handlers, read from the classes, so an event added later is fuzzed without touching this file.
EVENTS = {
    ns.namespace: sorted(
        name[3:]
        for name in dir(type(ns))
        if name.startswith("on_") and name[3:] not in RESERVED and callable(getattr(ns, name))
    )
    for ns in NAMESPACES
}
SCHEMAS = {ns.namespace: ns.schemas for ns in NAMESPACES}
ALL_EVENTS = sorted({event for events in EVENTS.values() for event in events})
# Far above the fuzzing's pace: the limiter still runs on every event, it just never refuses one here.
UNLIMITED = "1000000 per 10 seconds"
MIB = 1024 * 1024
FRAME_BUDGET = 900_000


@pytest.fixture(scope="module")
def server(app, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("socket-fuzz") / "web.log"
    # Presence is renewed every second, so a connection the server forgot to drop would come back quickly.
    settings = {"SOCKET_RATE_LIMIT": UNLIMITED, "PRESENCE_REFRESH_INTERVAL": 1}
    with open(log_path, "wb") as output, web_process(app, output=output, **settings) as web:
        yield web, log_path


@dataclass
class World:
    """Users, conversations and ids the well-formed part of each payload points at."""

    url: str
    tokens: dict[str, str]
    user_ids: dict[str, int]
    ids: dict[str, list[int]]
    sent: dict[int, str] = field(default_factory=dict)  # message id -> body, of every send the server accepted


@pytest.fixture
def world(server, client, make_user):
    web, _ = server
    names = ["ann", "ben", "eve", "churn"]
    users = {name: make_user(name) for name in names}
    tokens = {name: users[name][1] for name in names}
    uid = {name: users[name][0] for name in names}

    def post(path, token, body=None):
        response = client.post(path, json=body, headers=auth(token))
        assert response.status_code in (200, 201), response.get_json()
        return response.get_json()

    chat = post("/api/conversations/", tokens["ann"], {"user_ids": [uid["ben"]]})["id"]
    group = post("/api/conversations/", tokens["ann"], {"user_ids": [uid["ben"], uid["churn"]], "title": "g"})["id"]
    elsewhere = post("/api/conversations/", tokens["eve"], {"user_ids": [uid["ben"]]})["id"]  # ann is not in it
    message = post(f"/api/conversations/{chat}/messages/", tokens["ben"], {"body": "first"})["id"]
    foreign = post(f"/api/conversations/{elsewhere}/messages/", tokens["eve"], {"body": "private"})["id"]
    post(f"/api/users/{uid['ann']}/follow/", tokens["ben"])  # a notification for ann
    notifications = client.get("/api/notifications/", headers=auth(tokens["ann"])).get_json()["results"]
    ids = {
        "conversation_id": [chat, group, elsewhere, 0, -1, 10**9],
        "message_id": [message, foreign, 0, 10**9],
        "seq": [0, 1, 7],
        "after_seq": [0, 1, 7],
        "ids": [n["id"] for n in notifications] + [0, 10**9],
        "user_ids": [uid["ben"], uid["eve"], uid["churn"], 10**9],
    }
    return World(web.url, tokens, uid, ids, {message: "first", foreign: "private"})


# ---- payloads ----

JUNK_SCALARS = [
    None, True, False, 0, -1, 1.5, -0.0, 2**31, 2**63, -(2**63) - 1, 2**64, 10**30, float("inf"), float("nan"),
    "", " ", "0", "1", "true", "null", "[]", "{}", "\x00", "a\x00b", "\ud800", "\udfff x", "\u202e\u200b",
    "<script>alert(1)</script>", "'; DROP TABLE messages; --", "💣" * 5, "%s%n", "../../etc/passwd",
]  # fmt: skip


def junk(rng: random.Random, depth: int = 0):
    """A random JSON-ish value: scalars, odd strings, huge strings, bytes, nested lists and objects."""
    roll = rng.random()
    if roll < 0.45 or depth >= 4:
        return rng.choice(JUNK_SCALARS)
    if roll < 0.55:
        return "".join(rng.choice(string.printable + "éß漢字👍\u0301") for _ in range(rng.randint(1, 40)))
    if roll < 0.62:
        # Under the 1 MiB frame limit once JSON-escaped (a non-ASCII character takes up to 12 bytes).
        return rng.choice(["x" * rng.choice([4001, 65_536, 300_000]), rng.choice("é👍") * rng.choice([4001, 65_536])])
    if roll < 0.72:
        return rng.randbytes(rng.choice([0, 1, 16, 4096]))
    if roll < 0.86:
        return [junk(rng, depth + 1) for _ in range(rng.randint(0, 5))]
    keys = ["conversation_id", "body", "ids", "user_ids", "message_id", "", "__proto__", "x" * 300, "é"]
    return {rng.choice(keys): junk(rng, depth + 1) for _ in range(rng.randint(0, 5))}


def well_formed(world: World, name: str, schema_field, rng: random.Random | None):
    """A value of the field's type, pointing at a real id (or a missing or foreign one) where it names one.

    Without `rng`: the value that works, for a payload the server accepts (the first id is the caller's own)."""
    if isinstance(schema_field, mfields.List):
        count = rng.randint(1, 3) if rng else 1
        return [well_formed(world, name, schema_field.inner, rng) for _ in range(count)]
    if isinstance(schema_field, mfields.Boolean):
        return rng.choice([True, False]) if rng else True
    if isinstance(schema_field, mfields.Integer):
        choices = world.ids.get(name, [0, 1, 10**9])
        return rng.choice(choices) if rng else choices[0]
    if isinstance(schema_field, mfields.Url):
        return "https://example.com/a.png"
    if isinstance(schema_field, mfields.String):
        return rng.choice(["hi", "👍", f"fuzz {rng.random()}", "https://example.com/a.png"]) if rng else "hi"
    return junk(rng or random.Random(SEED))


@dataclass
class Emission:
    args: tuple  # the event's arguments: () is no payload at all
    must_fail: bool  # invalid whatever the values: the answer must be an error

    def fits(self) -> bool:
        """Under the server's frame limit (MAX_CONTENT_LENGTH): a larger frame closes the connection (its own test)."""
        size = len(json.dumps(self.args, default=lambda b: "x" * len(b)))  # bytes travel as they are
        return size < FRAME_BUDGET


def emissions(world: World, namespace: str, event: str, rng: random.Random, count: int) -> list[Emission]:
    schema = SCHEMAS[namespace].get(event)
    if schema is None:
        # No payload expected: whatever comes is ignored, and the event must still answer.
        return [Emission((), False)] + [Emission((junk(rng),), False) for _ in range(count - 1)]
    declared = schema().fields
    required = [name for name, f in declared.items() if f.required]
    out = [Emission((), True)]
    while len(out) < count:
        payload = {name: well_formed(world, name, f, rng) for name, f in declared.items()}
        roll = rng.randrange(9)
        if roll == 0:
            out.append(Emission((payload,), False))  # well-formed: may succeed, may be refused (not a member)
        elif roll == 1 and required:
            del payload[rng.choice(required)]
            out.append(Emission((payload,), True))
        elif roll == 2:
            payload[rng.choice(list(declared))] = junk(rng)
            out.append(Emission((payload,), False))
        elif roll == 3:
            payload[rng.choice(["extra", "is_admin", "user_id", "sender", ""])] = junk(rng)
            out.append(Emission((payload,), True))
        elif roll == 4:
            value = junk(rng)
            out.append(Emission((value,), not isinstance(value, dict)))
        elif roll == 5:
            out.append(Emission(({name: junk(rng) for name in declared},), False))
        elif roll == 6:
            out.append(Emission(([payload],), True))
        elif roll == 7:
            out.append(Emission((payload, junk(rng)), False))  # extra arguments after the payload are ignored
        else:
            out.append(Emission(({},), bool(required)))
    return out


UNKNOWN_EVENTS = [
    "", " ", "connect", "disconnect", "__init__", "__class__", "_dispatch", "_error", "schemas", "trigger_event",
    "on_connect", "emit", "SEND_MESSAGE", "send message", "send_message\x00", "événement", "x" * 2000, "1", "ping ",
]  # fmt: skip


# ---- the fuzzer ----


class Fuzzer:
    def __init__(self, world: World, rng: random.Random) -> None:
        self.world, self.rng = world, rng
        self.errors_answered: dict[str, int] = {ns: 0 for ns in EVENTS}
        self.events = self.connections = 0  # sent and opened, for the leak bound
        self.client = SocketClient(world.url, world.tokens["ann"], tuple(EVENTS))

    def close(self) -> None:
        self.client.close()

    def call(self, namespace: str, event: str, emission: Emission) -> dict:
        args = emission.args
        # python-socketio sends a tuple as several arguments, and None as none at all.
        data = tuple(args) if len(args) > 1 else args[0] if args else None
        self.events += 1
        try:
            ack = self.client.sio.call(event, data, namespace=namespace, timeout=15)
        except socketio_client.exceptions.TimeoutError:
            raise AssertionError(f"no answer to {namespace} {event!r} {_shown(args)}") from None
        assert isinstance(ack, dict), f"{namespace} {event!r} {_shown(args)} answered {ack!r}"
        error = ack.get("error")
        if emission.must_fail:
            assert error is not None, f"{namespace} {event!r} {_shown(args)} was accepted: {ack!r}"
        if error is not None:
            assert error["code"] != "internal_error", f"{namespace} {event!r} {_shown(args)}: {error}"
            assert error["event"] == event and error["message"], error
            self.errors_answered[namespace] += 1
        elif namespace == "/chat" and event == "send_message":
            self.world.sent[ack["id"]] = ack["body"]
        return ack

    def payloads(self, per_event: int) -> None:
        for namespace, events in EVENTS.items():
            for event in events:
                for emission in emissions(self.world, namespace, event, self.rng, per_event):
                    if emission.fits():
                        self.call(namespace, event, emission)

    def edge_values(self) -> None:
        """Each field of each payload in turn gets each odd value, the rest of the payload being one that works."""
        for namespace, events in EVENTS.items():
            for event in events:
                schema = SCHEMAS[namespace].get(event)
                if schema is None:
                    continue
                declared = schema().fields
                for name, schema_field in declared.items():
                    for value in JUNK_SCALARS:
                        payload = {n: well_formed(self.world, n, f, None) for n, f in declared.items()}
                        inside = isinstance(schema_field, mfields.List) and value is not None
                        payload[name] = [value] if inside else value
                        self.call(namespace, event, Emission((payload,), False))

    def unknown_events(self) -> None:
        for namespace, events in EVENTS.items():
            names = UNKNOWN_EVENTS + [e for e in ALL_EVENTS if e not in events]
            for name in names:
                emission = Emission((junk(self.rng),), True)
                while not emission.fits():
                    emission = Emission((junk(self.rng),), True)
                ack = self.call(namespace, name, emission)
                assert ack["error"]["code"] == "unknown_event", (namespace, name, ack)

    def error_events_match(self) -> None:
        """Every error answer was also an `error` event on that namespace."""
        for namespace, answered in self.errors_answered.items():
            wait_until(
                lambda ns=namespace, n=answered: len(self.client.received("error", ns)) == n,
                message=f"{answered} error events on {namespace} (got {len(self.client.received('error', namespace))})",
            )

    def churn(self, cycles: int) -> None:
        """Rapid connect/disconnect of every namespace, some closing cleanly, some dropping the transport."""
        for i in range(cycles):
            self.connections += 1
            sio = socketio_client.Client(reconnection=False)
            # Every fourth drops the transport without waiting for the namespaces: their connect handlers race
            # the disconnect.
            hasty = i % 4 == 3
            sio.connect(
                self.world.url, namespaces=list(EVENTS), auth={"token": self.world.tokens["churn"]},
                transports=["websocket"], wait=not hasty, wait_timeout=10,
            )  # fmt: skip
            if hasty:
                sio.eio.disconnect(abort=True)
                sio.disconnect()
                continue
            if i % 3 == 0:
                sio.emit("ping", namespace="/chat")  # an event in flight while the socket goes away
            if i % 2:
                sio.eio.disconnect(abort=True)
                sio.disconnect()
            else:
                sio.disconnect()

    def bad_tokens(self, revoked: str) -> None:
        for value in [
            None, {}, {"token": None}, {"token": ""}, {"token": 123}, {"token": ["x"]}, {"token": {"a": 1}},
            {"token": "x" * 20_000}, {"token": "\ud800"}, {"token": "\x00"}, {"token": revoked}, "a string", [1, 2], 7,
        ]:  # fmt: skip
            self.connections += 1
            sio = socketio_client.Client(reconnection=False)
            try:
                with pytest.raises(socketio_client.exceptions.ConnectionError):
                    sio.connect(self.world.url, namespaces=list(EVENTS), auth=value, transports=["websocket"],
                                wait_timeout=5)  # fmt: skip
            finally:
                sio.disconnect()

    def raw_packets(self) -> None:
        """Protocol-level garbage on a connection of its own: it may be closed, the server must stay up."""
        victim = SocketClient(self.world.url, self.world.tokens["ann"], ("/chat",))
        try:
            for raw in [
                '2/chat,["ping"', '2/chat,{"a":1}', "2/chat,[]", "2/chat,[1,2]", "2/chat,[null]", '2/chat,"ping"',
                '2/chat,["send_message",{"conversation_id":1e999,"body":"x"}]', "2/chat,7[\"ping\"]",
                '2/nowhere,["ping"]', '3/chat,99["x"]', '5/chat,1-["send_message",{"_placeholder":true,"num":0}]',
                '0/chat,{"token":"nope"}', "9/chat,", "2/chat,[" + "[" * 5000 + "]" * 5000 + "]",
            ]:  # fmt: skip
                if not victim.sio.connected:
                    break
                with contextlib.suppress(Exception):
                    victim.sio.eio.send(raw)
        finally:
            with contextlib.suppress(Exception):
                victim.close()

    def round(self, per_event: int, churn: int, revoked: str) -> None:
        self.payloads(per_event)
        self.unknown_events()
        self.raw_packets()
        self.churn(churn)
        self.bad_tokens(revoked)


def _shown(args) -> str:
    text = repr(args)
    return text if len(text) < 300 else text[:300] + "..."


def web_worker(server_process) -> psutil.Process:
    """gunicorn's one worker: the process that holds the sockets."""
    return wait_until(lambda: psutil.Process(server_process.pid).children(), message="the gunicorn worker")[0]


def healthy(url: str) -> bool:
    with urllib.request.urlopen(url + "/health", timeout=5) as response:
        return response.status == 200


# BSN's own source as traceback lines name it, not any path with "bsn/" in it: in a checkout in a folder
# named bsn, every library of its .venv is under ".../bsn/.venv", which "bsn/" alone took for BSN's code.
OWN_CODE = os.path.join(ROOT, "bsn") + os.sep


def bsn_failures(log_path) -> list[str]:
    """Lines of the server log that tell of a failure inside BSN's own code."""
    text = log_path.read_text(errors="replace")
    return [line for line in text.splitlines() if OWN_CODE in line or "socket event" in line or "CRITICAL" in line]


# ---- the tests ----


def test_fuzzed_events_get_error_answers_store_nothing_and_leak_nothing(app, server, world, client):
    web, log_path = server
    revoked = client.post("/api/auth/login/", json={"username": "eve", "password": "correct horse battery"})
    revoked = revoked.get_json()["token"]
    assert client.post("/api/auth/logout/", headers=auth(revoked)).status_code in (200, 204)
    rng = random.Random(SEED)
    fuzzer = Fuzzer(world, rng)
    worker = web_worker(web.process)
    try:
        for _ in range(2):  # warm-up: imports, pools, caches and the allocator's arenas settle
            fuzzer.round(per_event=24, churn=20, revoked=revoked)
        before, events, connections = worker.memory_info().rss, fuzzer.events, fuzzer.connections
        for _ in range(5):
            fuzzer.round(per_event=24, churn=20, revoked=revoked)
        after = worker.memory_info().rss
        events, connections = fuzzer.events - events, fuzzer.connections - connections
        fuzzer.error_events_match()
    finally:
        fuzzer.close()
    assert web.process.poll() is None and healthy(web.url)
    # After the warm-up the worker moves by 1-3 MiB here, up and down; 10 MiB is about 60 KiB per connection
    # (what a socket kept by mistake holds: its environ, queues, greenlets) or 6 KiB per event.
    grown = (after - before) / MIB
    assert grown < 10, f"the web worker grew {grown:.1f} MiB over {events} events and {connections} connections"

    # A well-formed client still works: a message goes out, is acked and arrives.
    ann, ben = SocketClient(web.url, world.tokens["ann"]), SocketClient(web.url, world.tokens["ben"])
    try:
        chat = world.ids["conversation_id"][0]
        ack = ann.call("send_message", {"conversation_id": chat, "body": "after the storm", "client_id": "calm"})
        assert ack["body"] == "after the storm"
        assert ben.wait_for("new_message", predicate=lambda m: m["id"] == ack["id"])
        world.sent[ack["id"]] = ack["body"]
    finally:
        ann.close()
        ben.close()

    # Nothing stored but what the server acknowledged: no message came from an invalid payload.
    from bsn.extensions import db
    from bsn.models import Message

    with app.app_context():
        stored = dict(db.session.execute(select(Message.id, Message.body)).all())
        assert db.session.scalar(select(func.count()).select_from(Message)) == len(world.sent)
    assert stored == world.sent
    assert bsn_failures(log_path) == []


def test_odd_values_in_every_field_are_refused_or_stored_intact(app, server, world):
    """NUL, lone surrogates, 64-bit overflow, NaN, huge numbers: an error answer or a faithful store, never a crash."""
    _, log_path = server
    fuzzer = Fuzzer(world, random.Random(SEED))
    try:
        fuzzer.edge_values()
        fuzzer.error_events_match()
    finally:
        fuzzer.close()
    from bsn.extensions import db
    from bsn.models import Message

    with app.app_context():
        assert dict(db.session.execute(select(Message.id, Message.body)).all()) == world.sent
    assert bsn_failures(log_path) == []


def test_the_reserved_event_names_cannot_be_triggered_by_a_client(server, world):
    """A client emitting `disconnect` or `connect` must not run the connection handlers."""
    web, _ = server
    ann = SocketClient(web.url, world.tokens["ann"], tuple(EVENTS))
    try:
        for namespace in EVENTS:
            for name, payload in [("disconnect", "client"), ("connect", {"token": world.tokens["eve"]})]:
                ack = ann.call(name, payload, namespace=namespace)
                assert ack["error"]["code"] == "unknown_event", (namespace, name, ack)
        # Still ann, still connected and in her rooms: presence and chat work as before.
        answer = ann.call("query", {"user_ids": [world.user_ids["ben"]]}, namespace="/presence")
        assert "results" in answer
        chat = world.ids["conversation_id"][0]
        assert (
            ann.call("send_message", {"conversation_id": chat, "body": "still me"})["sender"]["id"]
            == (world.user_ids["ann"])
        )
    finally:
        ann.close()


def test_churned_connections_leave_no_presence_or_socket_ids_behind(app, server, world):
    fuzzer = Fuzzer(world, random.Random(SEED))
    try:
        fuzzer.churn(30)
        from bsn.extensions import redis_store
        from bsn.services import messaging, presence

        # The last disconnect handlers may still be running when the client's disconnect returns.
        with app.app_context():
            sids = messaging.CHAT_SIDS.format(world.user_ids["churn"])
            wait_until(lambda: redis_store.client.scard(sids) == 0, message="no /chat socket ids left for churn")
            conns = presence.CONNS.format(world.user_ids["churn"])
            wait_until(lambda: redis_store.client.zcard(conns) == 0, message="no connections left for churn")
            # After the server's next renewal of its connections (ann's is still open), churn's stay gone.
            emptied = time.time()
            ann = str(world.user_ids["ann"])
            wait_until(lambda: (redis_store.client.zscore(presence.ONLINE, ann) or 0) > emptied, message="a renewal")
            assert redis_store.client.zcard(conns) == 0
        query = {"user_ids": [world.user_ids["churn"]]}
        wait_until(
            lambda: fuzzer.client.call("query", query, namespace="/presence")["results"][0]["online"] is False,
            message="churn offline",
        )
    finally:
        fuzzer.close()


def test_malformed_packets_cannot_flood_the_log(server, world):
    web, log_path = server
    flooder = SocketClient(web.url, world.tokens["ann"])
    try:
        start = log_path.stat().st_size
        for _ in range(50):
            flooder.sio.eio.send('2/chat,{"a":1}')  # python-socketio raises on each (a packet that is no list)
        assert flooder.call("ping")["ok"] is True  # the packets before it were handled
        assert flooder.sio.connected
    finally:
        flooder.close()
    with open(log_path, "rb") as log:
        log.seek(start)
        added = log.read().decode(errors="replace")
    # One traceback a minute at most (two if a minute turned meanwhile), and each error logged once, in the app's
    # format (engine.io's own handler used to print it again, bare).
    assert added.count("Traceback") <= 2, added[-3000:]
    assert "\nmessage handler error\n" not in "\n" + added


def test_an_oversized_frame_closes_only_that_connection(server, world):
    web, _ = server
    big = SocketClient(web.url, world.tokens["ann"])
    other = SocketClient(web.url, world.tokens["ben"])
    try:
        with contextlib.suppress(Exception):
            big.sio.emit("send_message", {"conversation_id": 1, "body": "x" * 3_000_000}, namespace="/chat")
        wait_until(lambda: not big.sio.connected, message="the oversized sender to be disconnected")
        assert other.call("ping")["ok"] is True
        assert healthy(web.url)
    finally:
        big.close()
        other.close()
