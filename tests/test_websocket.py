"""WebSocket transport: a frame reaches the client whole, however large and however slowly the client reads."""

import fcntl
import json
import socket
import struct
import termios

import pytest
import websocket

from tests.helpers import wait_until, web_process

# A message's body at the length limit, each character escaped to six bytes in the JSON of a frame.
BODY = "é" * 4000


def _fill(app, sender_id: int, conversation_id: int, count: int) -> None:
    from bsn.actors import Caller
    from bsn.services import messaging

    with app.app_context():
        for i in range(count):
            messaging.send_message(Caller(sender_id), conversation_id, BODY, f"fill-{i}")


def _unread(sock: socket.socket) -> int:
    """Bytes waiting in the kernel's receive buffer of `sock`."""
    buf = fcntl.ioctl(sock.fileno(), termios.FIONREAD, struct.pack("i", 0))
    return struct.unpack("i", buf)[0]


def _most_in_flight() -> int:
    """The most a TCP sender's kernel can hold at once (Linux: tcp_wmem's maximum)."""
    with open("/proc/sys/net/ipv4/tcp_wmem") as f:
        return int(f.read().split()[2])


def _chat_client(url: str, token: str) -> websocket.WebSocket:
    """A raw Socket.IO websocket on /chat whose kernel buffer holds only a few KiB (a slow mobile reader)."""
    ws = websocket.create_connection(
        url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket",
        sockopt=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)],
        timeout=15,
    )
    assert ws.recv().startswith("0{")  # engine.io open
    ws.send("40/chat," + json.dumps({"token": token}))
    assert ws.recv().startswith("40/chat,{")
    return ws


def _ack(ws: websocket.WebSocket, ack_id: int):
    prefix = f"43/chat,{ack_id}"
    while True:
        frame = ws.recv()
        if frame.startswith(prefix):
            return len(frame.encode()), json.loads(frame[len(prefix) :])[0]


def test_a_sync_ack_larger_than_the_kernel_can_buffer_reaches_a_slow_reader_whole(app, pair):
    count = 500
    _fill(app, pair["ann"][0], pair["chat"], count)
    with web_process(app) as web:
        ws = _chat_client(web.url, pair["ben"][1])
        try:
            ws.send("42/chat,1" + json.dumps(["sync", {"conversation_id": pair["chat"], "after_seq": 0}]))
            # Not one byte is read until the server has begun the ack: its first write meets a full window.
            wait_until(lambda: _unread(ws.sock) > 0, message="the ack's first bytes")
            size, synced = _ack(ws, 1)
            assert size > _most_in_flight()  # so no single socket write could have taken the whole frame
            assert [m["seq"] for m in synced["results"]] == list(range(1, count + 1))
            assert all(m["body"] == BODY for m in synced["results"])
            # The stream is still in step: the next frame parses and answers.
            ws.send("42/chat,2" + json.dumps(["ping", {}]))
            assert _ack(ws, 2)[1]
        finally:
            ws.close()


class _Trickle:
    """A client socket that takes at most `chunk` bytes a write, as a kernel with a nearly full buffer does."""

    def __init__(self, chunk: int, fail_on_call: int | None = None) -> None:
        self.chunk = chunk
        self.fail_on_call = fail_on_call
        self.calls = 0
        self.written = bytearray()
        self.shut = False

    def send(self, data, flags=0):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise ConnectionResetError("reset by peer")
        taken = bytes(data[: self.chunk])
        self.written += taken
        return len(taken)

    def settimeout(self, seconds):
        self.timeout = seconds

    def shutdown(self, how):
        self.shut = True


def test_a_frame_goes_out_whole_through_a_socket_that_takes_a_little_at_a_time():
    from bsn.websocket import FrameSocket

    sock = _Trickle(chunk=1000)
    frames = [bytes([n]) * 4500 for n in range(3)]
    wrapped = FrameSocket(sock)
    for frame in frames:
        assert wrapped.send(frame) == 4500
    assert bytes(sock.written) == b"".join(frames)
    assert sock.calls == 15


def test_after_a_write_fails_the_connection_is_shut_and_no_later_frame_goes_out():
    from bsn.websocket import FrameSocket

    sock = _Trickle(chunk=1000, fail_on_call=2)
    frames = FrameSocket(sock)
    with pytest.raises(BrokenPipeError, match="reset by peer"):
        frames.send(b"x" * 4500)
    assert sock.shut  # the reader wakes to a closed connection instead of a stream with half a frame in it
    with pytest.raises(BrokenPipeError):
        frames.send(b"pong")
    assert sock.calls == 2 and len(sock.written) == 1000


def _gevent_pair(buffer: int = 8192):
    import gevent.socket

    a, b = gevent.socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, buffer)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer)
    return a, b


def test_a_client_that_takes_nothing_or_says_nothing_is_given_up_after_the_stall_timeout():
    import gevent

    from bsn.websocket import FrameSocket

    server, client = _gevent_pair()
    with server, client:
        frames = FrameSocket(server, stall_timeout=0.2)
        with gevent.Timeout(10), pytest.raises(TimeoutError):
            frames.recv(1)  # simple-websocket's reader: a client silent that long is gone too
        with gevent.Timeout(10), pytest.raises(BrokenPipeError, match="timed out"):
            frames.send(b"x" * (4 << 20))
        # What had been written is still there to read, then the end of the stream: the server shut it.
        received = bytearray()
        with gevent.Timeout(10):
            while chunk := client.recv(65536):
                received += chunk
        assert 0 < len(received) < 4 << 20


def test_two_greenlets_frames_never_interleave():
    """simple-websocket's reader (pongs, close) and engine.io's writer both write to one connection."""
    import gevent

    from bsn.websocket import FrameSocket

    server, client = _gevent_pair()
    size = 1 << 20
    with server, client:
        frames = FrameSocket(server)
        writers = [gevent.spawn(frames.send, bytes([n]) * size) for n in b"ab"]
        received = bytearray()
        with gevent.Timeout(20):
            while len(received) < 2 * size:
                chunk = client.recv(4096)  # a small read each turn: the writers keep meeting a full buffer
                assert chunk, "the server ended the connection"
                received += chunk
        gevent.joinall(writers, raise_error=True)
    assert sorted([received[:size], received[size:]]) == [b"a" * size, b"b" * size]


def _read_all(sock, size: int) -> bytes:
    import gevent

    received = bytearray()
    with gevent.Timeout(20):
        while len(received) < size:
            chunk = sock.recv(65536)
            assert chunk, "the server ended the connection"
            received += chunk
    return bytes(received)


def test_a_frame_is_written_at_once_and_the_rest_of_a_large_one_never_holds_up_the_sender():
    import gevent

    from bsn.websocket import FrameSocket

    server, client = _gevent_pair()
    size = 1 << 20
    with server, client:
        frames = FrameSocket(server)
        assert frames.send_now(lambda: b"small")
        assert _read_all(client, 5) == b"small"
        made = []
        # Nobody reads yet: a write that waited for the client would never return (the timeout would fail the test).
        with gevent.Timeout(5):
            assert frames.send_now(lambda: made.append(1) or b"a" * size)
            # Its rest is still being written: the next frame is neither made nor written, and comes after it.
            assert not frames.send_now(lambda: made.append(2) or b"never")
        assert made == [1]
        later = gevent.spawn(frames.send, b"b" * 10)  # as engine.io's writer, for a frame queued meanwhile
        assert _read_all(client, size + 10) == b"a" * size + b"b" * 10
        later.get(timeout=10)
        assert frames.send_now(lambda: b"again")  # the lock was given back
        assert _read_all(client, 5) == b"again"


def test_a_failed_write_at_once_shuts_the_connection_like_a_failed_send():
    from bsn.websocket import FrameSocket

    server, client = _gevent_pair()
    with server:
        frames = FrameSocket(server)
        client.close()
        with pytest.raises(BrokenPipeError):
            for _ in range(100):  # the first writes may still land in the kernel before it learns the peer is gone
                frames.send_now(lambda: b"x" * 65536)
        with pytest.raises(BrokenPipeError, match="earlier frame"):
            frames.send(b"pong")


def test_writes_at_once_are_for_gevent_sockets_only():
    from bsn.websocket import FrameSocket

    a, b = socket.socketpair()
    with a, b:
        assert FrameSocket(a).send_now(lambda: b"x") is False


def test_a_slow_reader_gets_every_message_once_and_in_order_whichever_way_each_frame_went(app, pair):
    """Some of ben's frames go out at once, some meet a frame still being written and are queued for the writer."""
    count = 150
    with web_process(app) as web:
        ws = _chat_client(web.url, pair["ben"][1])
        try:
            _fill(app, pair["ann"][0], pair["chat"], count)  # published through Redis, written by the web process
            seqs = []
            while len(seqs) < count:
                frame = ws.recv()
                if frame.startswith('42/chat,["new_message"'):
                    message = json.loads(frame[len("42/chat,") :])[1]
                    assert message["body"] == BODY
                    seqs.append(message["seq"])
            assert seqs == list(range(1, count + 1))
        finally:
            ws.close()


def test_a_frame_waiting_for_the_lock_is_not_passed_by_a_write_at_once():
    """A released gevent Semaphore wakes its waiter later and reads as free meanwhile: send_now must still wait."""
    import gevent

    from bsn.websocket import FrameSocket

    server, client = _gevent_pair()
    with server, client:
        frames = FrameSocket(server)
        frames._lock.acquire()  # a frame being written (as send or send_now's finishing task hold it)
        waiting = gevent.spawn(frames.send, b"first")
        gevent.sleep(0)  # it is now blocked on the lock
        frames._lock.release()  # its wake-up is only scheduled
        assert not frames._lock.locked()
        assert not frames.send_now(lambda: b"second")  # so this one is queued behind it, as engine.io would
        waiting.get(timeout=10)
        assert _read_all(client, 5) == b"first"
        assert frames.send_now(lambda: b"third")
        assert _read_all(client, 5) == b"third"
