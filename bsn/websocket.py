"""WebSocket connections under simple-websocket: every frame is written whole, one frame at a time.

simple-websocket (1.1.0, the newest release) writes a frame with one `socket.send`, which writes what fits in
the kernel's buffer and nothing more: a frame larger than that, such as the `sync` ack of a reconnecting client
that reads slowly, went out cut short and every later frame was garbage to the client (upstream:
miguelgrinberg/simple-websocket#45, fixed on its main branch, not released). Here the socket it is handed
writes the whole frame, under a lock, because its reader thread writes too (pongs, the close handshake), and
two frames' bytes must never interleave.

On gevent, engine.io's packets also go out at once from the task that sends them, when nothing is ahead of them
(`write_packets_at_once`), instead of waiting for the socket's writer task.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from contextlib import suppress

import gevent
import gevent.lock
import gevent.socket
import gevent.ssl


class WebSocketEnviron:
    """WSGI middleware for WebSocket handshakes: hands simple-websocket a `FrameSocket`.

    `compression=False` also hides the client's extension offer, so no connection negotiates
    permessage-deflate: simple-websocket accepts deflate whenever it is offered and has no setting to refuse,
    and a compressed connection keeps a zlib compressor and decompressor (about 260 KiB) for its whole life.
    """

    # Where the servers simple-websocket supports put the client's socket (gunicorn, Werkzeug's dev server).
    SOCKET_KEYS = ("gunicorn.socket", "werkzeug.socket")

    def __init__(self, wsgi_app, *, compression: bool, stall_timeout: float | None) -> None:
        self.wsgi_app = wsgi_app
        self.compression = compression
        self.stall_timeout = stall_timeout

    def __call__(self, environ, start_response):
        if environ.get("HTTP_UPGRADE", "").lower() == "websocket":
            if not self.compression:
                environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)
            for key in self.SOCKET_KEYS:
                if key in environ:
                    environ[key] = FrameSocket(environ[key], self.stall_timeout)
        return self.wsgi_app(environ, start_response)


class FrameSocket:
    """A client socket whose `send` writes all it is given, or fails and shuts the connection down.

    A frame that cannot be finished leaves the stream unreadable, so after the first failed write every
    later one fails at once (`BrokenPipeError`, which simple-websocket's close expects), and the shutdown wakes
    its reader, which ends the connection as if the client had gone.

    `stall_timeout` becomes the socket's timeout: the longest one write waits for the client to take a byte,
    and one read for the client to say anything (None: for ever). engine.io means to set the same (its ping
    interval plus timeout) but looks for the socket under names simple-websocket does not use; a live client
    answers a ping well inside it, so only a client engine.io would give up on anyway is cut off by it.
    """

    def __init__(self, sock: socket.socket, stall_timeout: float | None = None) -> None:
        self._sock = sock
        sock.settimeout(stall_timeout)
        self._broken = False
        on_gevent = isinstance(sock, gevent.socket.socket)
        # Written straight to the descriptor: never a TLS socket, whose bytes must go through its own send.
        self._direct = on_gevent and not isinstance(sock, gevent.ssl.SSLSocket)
        # A greenlet waiting on a thread's lock would stall every other greenlet of the process.
        self._lock = gevent.lock.Semaphore() if on_gevent else threading.Lock()
        # Frames made and waiting for the lock. A released Semaphore wakes its waiter later, and meanwhile reads as
        # free: send_now must not slip a later frame in before them.
        self._waiting = 0

    def send(self, data, flags: int = 0) -> int:
        self._waiting += 1
        try:
            self._lock.acquire()
        finally:
            self._waiting -= 1
        try:
            self._refuse_if_broken()
            self._write(memoryview(data), flags)
        finally:
            self._lock.release()
        return len(data)

    sendall = send

    def send_now(self, frame: Callable[[], bytes]) -> bool:
        """Write a frame without waiting for the client or for another frame (gevent only).

        False, with nothing made or written, when another frame is being written or waits to be (and on plain
        threads or TLS). Else the frame is made, holding the lock, so frames are made in the order they go out
        (permessage-deflate's state depends on it), and written: at once as far as the kernel's buffer takes it, and
        the rest, if any, by a task of its own that keeps the lock until it is done, so no other frame can pass it.
        A failed write shuts the connection down as `send` does and raises BrokenPipeError.
        """
        if not self._direct or self._waiting or self._lock.locked():
            return False
        self._lock.acquire()
        try:
            self._refuse_if_broken()
            data = memoryview(frame())
            try:
                # The descriptor is non-blocking under gevent: this takes what fits and never waits.
                sent = os.write(self._sock.fileno(), data)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                self._shut()
                raise _broken(exc) from exc
        except BaseException:
            self._lock.release()
            raise
        if sent == len(data):
            self._lock.release()
        else:
            gevent.spawn(self._finish, data[sent:])
        return True

    def _finish(self, rest: memoryview) -> None:
        try:
            self._write(rest, 0)
        except BaseException:  # noqa: BLE001 - the connection is shut: its reader ends it, as after a failed send
            pass
        finally:
            self._lock.release()

    def _write(self, rest: memoryview, flags: int) -> None:
        """Write all of `rest`, waiting for the client as long as the stall timeout allows, or fail and shut down."""
        try:
            while rest:  # a full kernel buffer takes part: the rest goes as the client reads
                rest = rest[self._sock.send(rest, flags) :]
        except BaseException as exc:
            self._shut()
            if isinstance(exc, OSError):
                raise _broken(exc) from exc
            raise

    def _refuse_if_broken(self) -> None:
        if self._broken:
            raise BrokenPipeError("an earlier frame on this connection could not be written whole")

    def _shut(self) -> None:
        self._broken = True
        with suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)

    def __getattr__(self, name):
        return getattr(self._sock, name)


def _broken(exc: OSError) -> BrokenPipeError:
    return BrokenPipeError(f"a frame could not be written whole: {exc}")


_installed = False


def write_packets_at_once() -> None:
    """engine.io (gevent): a packet for a websocket with nothing else to write goes out at once, from the task that
    sends it, instead of through the socket's queue and writer task.

    Why: python-engineio puts every packet in its socket's queue, and a writer task per socket takes it out and writes
    it. A chat message to a room of ten went out only once the task storing it gave way, then cost ten task switches
    and ten timers, one per writer: half a millisecond between the commit and the first recipient's write, a
    millisecond to the tenth. Written at once, only the kernel's buffer stands between the commit and the clients.

    Order is kept: a packet is written at once only when the socket's queue is empty and no frame of the connection is
    being written (FrameSocket.send_now); otherwise it is queued as before, and the writer takes it after the frames
    before it. A client that reads slowly never holds up the sender: what its buffer does not take is written by a
    task of its own. The queue path is untouched, so long-polling, upgrades in progress, and any packet that meets a
    busy connection behave exactly as python-engineio's own (4.x; pinned in requirements.txt).
    """
    global _installed
    if _installed:
        return
    _installed = True
    from engineio.socket import Socket
    from wsproto.events import BytesMessage, TextMessage

    handler = Socket._websocket_handler
    queued_send = Socket.send

    def _websocket_handler(self, ws):
        self.bsn_websocket = ws  # engine.io's SimpleWebSocketWSGI, around simple-websocket's Server
        try:
            return handler(self, ws)
        finally:
            self.bsn_websocket = None

    def send(self, pkt):
        wrapper = getattr(self, "bsn_websocket", None)
        if wrapper is not None and self.upgraded and not self.upgrading and not self.closed and self.queue.empty():
            server = wrapper.ws
            sock = server.sock
            if isinstance(sock, FrameSocket) and server.connected:
                if not self.check_ping_timeout():
                    return
                encoded = pkt.encode()
                message = BytesMessage(data=encoded) if isinstance(encoded, bytes) else TextMessage(data=encoded)
                try:
                    if sock.send_now(lambda: server.ws.send(message)):
                        return
                except Exception:  # noqa: BLE001 - queued instead: the writer meets the same end and closes the socket
                    pass
        return queued_send(self, pkt)

    Socket._websocket_handler = _websocket_handler
    Socket.send = send
