"""The /chat and /presence namespaces against a real web process (gunicorn + gevent) on real Redis."""

import pytest
import socketio as socketio_client

from tests.conftest import auth
from tests.helpers import SocketClient, wait_until, web_process

CHAT = "/chat"


@pytest.fixture(scope="session")
def server(app):
    with web_process(app, TYPING_TIMEOUT=1, SOCKET_RATE_LIMIT="100 per 10 minutes") as web:
        yield web.url


@pytest.fixture
def sockets(server):
    opened = []

    def open_socket(token, namespaces=(CHAT,)):
        client = SocketClient(server, token, namespaces)
        opened.append(client)
        return client

    yield open_socket
    for client in opened:
        client.close()


def say(socket, chat, body, client_id=None):
    return socket.call("send_message", {"conversation_id": chat, "body": body, "client_id": client_id})


@pytest.mark.parametrize("auth_value", [None, {"token": "nope"}, "not a dict"])
def test_a_connection_without_a_valid_token_is_refused(server, auth_value):
    sio = socketio_client.Client(reconnection=False)
    with pytest.raises(socketio_client.exceptions.ConnectionError):
        sio.connect(server, namespaces=[CHAT], auth=auth_value, transports=["websocket"], wait_timeout=5)


def test_send_acks_the_stored_message_and_the_other_member_receives_it(sockets, pair):
    ann, ben = sockets(pair["ann"][1]), sockets(pair["ben"][1])
    ack = say(ann, pair["chat"], "hi", "a1")
    assert ack["seq"] == 1 and ack["body"] == "hi" and ack["sender"]["id"] == pair["ann"][0]
    received = ben.wait_for("new_message")
    assert received[0]["id"] == ack["id"] and received[0]["created_at"] == ack["created_at"]
    assert say(ann, pair["chat"], "hi", "a1")["id"] == ack["id"]  # a retry stores nothing new
    assert len(ben.wait_for("new_message")) == 1


def test_bad_payloads_get_an_error_event_and_the_connection_stays(sockets, pair):
    ann = sockets(pair["ann"][1])
    bad = [
        None,
        "text",
        {"conversation_id": "1", "body": "x"},
        {"conversation_id": pair["chat"]},
        {"conversation_id": pair["chat"], "body": "x" * 5000},
        [1, 2],
    ]
    for payload in bad:
        ack = ann.call("send_message", payload)
        assert ack["error"]["code"] in ("validation_error", "invalid_payload"), payload
    ann.emit("no_such_event", {})
    errors = ann.wait_for("error", predicate=lambda e: e["event"] == "no_such_event")
    assert errors[0]["code"] == "unknown_event"
    assert say(ann, pair["chat"], "still works")["seq"] == 1


def test_non_members_cannot_send_or_join(sockets, pair, make_user):
    _, eve = make_user("eve")
    intruder = sockets(eve)
    assert say(intruder, pair["chat"], "x")["error"]["code"] == "not_found"
    assert intruder.call("join", {"conversation_id": pair["chat"]})["error"]["code"] == "not_found"


def test_typing_reaches_the_others_and_expires_by_itself(sockets, pair):
    ann, ben = sockets(pair["ann"][1]), sockets(pair["ben"][1])
    ann.call("typing", {"conversation_id": pair["chat"], "is_typing": True})
    started = ben.wait_for("typing", predicate=lambda e: e["is_typing"])
    assert started[0] == {"conversation_id": pair["chat"], "user_id": pair["ann"][0], "is_typing": True}
    # No renewal: the server ends it TYPING_TIMEOUT (1 s here) later by itself.
    stopped = ben.wait_for("typing", predicate=lambda e: not e["is_typing"])
    assert stopped[0]["user_id"] == pair["ann"][0]
    assert ann.received("typing") == []  # never echoed to the typer


def test_read_react_and_ping(sockets, pair):
    ann, ben = sockets(pair["ann"][1]), sockets(pair["ben"][1])
    message = say(ann, pair["chat"], "read me")
    read = ben.call("read", {"conversation_id": pair["chat"], "message_id": message["id"]})
    assert read["last_read_seq"] == 1
    receipt = ann.wait_for("read_receipt")
    assert receipt[0] == {"conversation_id": pair["chat"], "user_id": pair["ben"][0], "seq": 1}
    ben.call("react", {"message_id": message["id"], "emoji": "👍"})
    assert ann.wait_for("reaction")[0]["emoji"] == "👍"
    ann.emit("ping")
    assert ann.wait_for("pong")


def test_fifty_messages_sent_while_away_arrive_in_order_exactly_once_after_sync(sockets, pair):
    ann, ben = sockets(pair["ann"][1]), sockets(pair["ben"][1])
    last_seen = say(ann, pair["chat"], "before")["seq"]
    ben.wait_for("new_message")
    ben.close()
    for i in range(50):
        say(ann, pair["chat"], f"away {i}", f"w{i}")
    ben = sockets(pair["ben"][1])
    got, after = [], last_seen
    while True:
        batch = ben.call("sync", {"conversation_id": pair["chat"], "after_seq": after})
        got += batch["results"]
        if not batch["has_more"]:
            break
        after = batch["results"][-1]["seq"]
    assert [m["body"] for m in got] == [f"away {i}" for i in range(50)]
    assert [m["seq"] for m in got] == list(range(2, 52))


def test_a_new_conversation_is_joined_live(client, sockets, pair, make_user):
    _, cy = make_user("cy")
    ann = sockets(pair["ann"][1])
    group = client.post(
        "/api/conversations/", json={"user_ids": [pair["ann"][0]], "title": "new"}, headers=auth(cy)
    ).get_json()["id"]
    assert ann.wait_for("conversation_created")[0]["conversation_id"] == group
    client.post(f"/api/conversations/{group}/messages/", json={"body": "welcome"}, headers=auth(cy))
    welcome = ann.wait_for("new_message", predicate=lambda m: m["conversation_id"] == group)
    assert welcome[0]["body"] == "welcome"


def test_a_flood_is_limited_with_errors_not_crashes(sockets, pair):
    ann = sockets(pair["ann"][1])
    acks = [ann.call("ping") for _ in range(110)]  # the server allows 100 per 10 minutes, however slow we are
    assert [a.get("ok") for a in acks[:100]] == [True] * 100
    assert {a["error"]["code"] for a in acks[100:]} == {"rate_limited"}
    assert ann.sio.connected


def test_concurrent_events_of_one_user_are_counted_exactly(sockets, pair):
    """Events arriving together (on gevent their limit hits go out pipelined together) are each counted once."""
    from concurrent.futures import ThreadPoolExecutor

    tabs = [sockets(pair["ann"][1]) for _ in range(3)]
    with ThreadPoolExecutor(len(tabs)) as pool:
        acks = [a for batch in pool.map(lambda tab: [tab.call("ping") for _ in range(40)], tabs) for a in batch]
    assert sum(1 for a in acks if a.get("ok")) == 100
    assert [a["error"]["code"] for a in acks if not a.get("ok")] == ["rate_limited"] * 20


def test_presence_is_shown_to_contacts_only_and_goes_offline(sockets, pair, make_user):
    _, stranger = make_user("stranger")
    ann = sockets(pair["ann"][1], ("/presence",))
    ben = sockets(pair["ben"][1], ("/presence",))
    answer = ann.call("query", {"user_ids": [pair["ben"][0]]}, namespace="/presence")
    assert answer["results"] == [{"user_id": pair["ben"][0], "online": True, "last_seen": None}]
    outsider = sockets(stranger, ("/presence",))
    assert outsider.call("query", {"user_ids": [pair["ben"][0]]}, namespace="/presence")["results"] == []
    ben.close()
    offline = ann.wait_for("presence", "/presence", lambda p: p["user_id"] == pair["ben"][0] and not p["online"])
    assert offline[0]["last_seen"].endswith("Z")


def test_sends_emitted_back_to_back_are_stored_in_the_order_they_were_sent(sockets, pair):
    """One socket's events run in order (bsn/sockets/inbox.py): 30 sends emitted without waiting get seqs 1..30."""
    import threading

    ann, ben = sockets(pair["ann"][1]), sockets(pair["ben"][1])
    acks, lock = {}, threading.Lock()

    def on_ack(i):
        def record(answer):
            with lock:
                acks[i] = answer

        return record

    for i in range(30):
        payload = {"conversation_id": pair["chat"], "body": f"m{i}", "client_id": f"order-{i}"}
        ann.sio.emit("send_message", payload, namespace=CHAT, callback=on_ack(i))
    wait_until(lambda: len(acks) == 30, message="30 acks")
    assert [acks[i]["seq"] for i in range(30)] == list(range(1, 31))
    delivered = ben.wait_for("new_message", count=30)
    assert [m["body"] for m in delivered] == [f"m{i}" for i in range(30)]


def test_sends_beyond_the_waiting_bound_are_refused_before_anything_is_stored(app, pair, monkeypatch):
    """In process, on the namespace itself: the first send's batch is held, two sends wait, the third is refused."""
    import threading
    import time

    from bsn.actors import Caller
    from bsn.errors import ServiceUnavailable
    from bsn.extensions import socketio
    from bsn.services import messaging

    chat_ns = socketio.server.namespace_handlers[CHAT]
    monkeypatch.setitem(app.config, "CHAT_MAX_WAITING_SENDS", 2)
    ann = Caller(pair["ann"][0])
    answers = {}
    with app.app_context():
        group = messaging._group_commit()
    held, store = threading.Event(), group._store
    monkeypatch.setattr(group, "_store", lambda sends: (held.wait(10), store(sends))[1])

    def send(i):
        with app.app_context():
            payload = {"conversation_id": pair["chat"], "body": f"m{i}", "client_id": f"w{i}"}
            answers[i] = chat_ns.on_send_message(ann, payload)

    waiting = [threading.Thread(target=send, args=(i,)) for i in range(2)]
    try:
        for thread in waiting:
            thread.start()
        deadline = time.monotonic() + 10
        while chat_ns._waiting < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert chat_ns._waiting == 2
        with app.app_context(), pytest.raises(ServiceUnavailable):
            chat_ns.on_send_message(ann, {"conversation_id": pair["chat"], "body": "m2", "client_id": "w2"})
        with app.app_context():
            # Refused before its rate limit and validation are paid for; other events go on.
            with pytest.raises(ServiceUnavailable):
                chat_ns.admit("send_message")
            chat_ns.admit("typing")
    finally:
        held.set()
        for thread in waiting:
            thread.join(timeout=10)
    assert sorted(answer["seq"] for answer in answers.values()) == [1, 2] and chat_ns._waiting == 0
    page = app.test_client().get(f"/api/conversations/{pair['chat']}/messages/", headers=auth(pair["ann"][1]))
    assert sorted(m["client_id"] for m in page.get_json()["results"]) == ["w0", "w1"]  # the refused one: nothing


def _as_socket(app, sid, call):
    """Run a /chat handler in process, as python-socketio would for socket `sid`."""
    from flask import request

    with app.test_request_context("/socket.io/"):
        request.sid, request.namespace = sid, CHAT
        return call()


def _refused_without_a_trace(app, pair, sid):
    """Connect Ann's socket `sid` in process; it must be refused and leave nothing registered. Returns the refusal."""
    from socketio.exceptions import ConnectionRefusedError as Refused

    from bsn.extensions import socketio
    from bsn.services import presence

    chat_ns = socketio.server.namespace_handlers[CHAT]
    ann_id, token = pair["ann"]
    with pytest.raises(Refused) as refused:
        _as_socket(app, sid, lambda: chat_ns.on_connect({"token": token}))
    assert sid not in chat_ns.callers and ann_id not in chat_ns.users_here
    with app.app_context():
        assert presence.online_among([ann_id]) == set()
    return refused.value


def test_a_connect_failing_after_it_registered_leaves_no_presence_behind(app, pair, monkeypatch):
    """python-socketio runs no disconnect for a failed connect, so the connect undoes itself."""
    from bsn.services import messaging

    def unavailable(user_id):
        raise RuntimeError("database gone")

    monkeypatch.setattr(messaging, "conversation_ids", unavailable)
    refused = _refused_without_a_trace(app, pair, "failed-connect")
    assert refused.error_args["message"].startswith("service_unavailable")


def test_a_client_that_left_while_its_connect_ran_leaves_nothing_behind(app, pair, monkeypatch):
    from bsn.extensions import socketio

    monkeypatch.setattr(socketio.server.namespace_handlers[CHAT], "_transport_open", lambda sid: False)
    _refused_without_a_trace(app, pair, "gone")


def test_the_namespace_counts_each_users_sockets_on_this_process(app, pair, monkeypatch):
    """In process: what a send trusts instead of asking Redis whether a member is online."""
    from bsn.extensions import socketio

    chat_ns = socketio.server.namespace_handlers[CHAT]
    monkeypatch.setattr(chat_ns, "_transport_open", lambda sid: True)
    ann_id, token = pair["ann"]
    try:
        _as_socket(app, "tab-1", lambda: chat_ns.on_connect({"token": token}))
        _as_socket(app, "tab-2", lambda: chat_ns.on_connect({"token": token}))
        assert chat_ns.users_here[ann_id] == 2
        _as_socket(app, "tab-1", chat_ns.on_disconnect)
        _as_socket(app, "tab-1", chat_ns.on_disconnect)  # a repeated disconnect counts once
        assert chat_ns.users_here[ann_id] == 1
    finally:
        _as_socket(app, "tab-1", chat_ns.on_disconnect)
        _as_socket(app, "tab-2", chat_ns.on_disconnect)
    assert ann_id not in chat_ns.users_here


def _websocket_handshake(url: str) -> tuple[str, dict]:
    """A browser's WebSocket opening (it always offers permessage-deflate): the status line and headers."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    request = (
        "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
        f"Host: {parts.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
    )
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as conn:
        conn.sendall(request.encode())
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = conn.recv(4096)
            assert chunk, f"the server closed the connection after {answer!r}"
            answer += chunk
    status, *lines = answer.split(b"\r\n\r\n")[0].decode().split("\r\n")
    return status, {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}


def test_a_browsers_deflate_offer_is_declined_by_default(server):
    status, headers = _websocket_handshake(server)
    assert status.split()[1] == "101" and headers["upgrade"].lower() == "websocket"
    assert "sec-websocket-extensions" not in headers  # no zlib state per connection (SOCKET_COMPRESSION)


def test_socket_compression_on_accepts_the_offer(app):
    with web_process(app, SOCKET_COMPRESSION="true") as web:
        status, headers = _websocket_handshake(web.url)
    assert status.split()[1] == "101"
    assert headers["sec-websocket-extensions"].startswith("permessage-deflate")
