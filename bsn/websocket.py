"""WebSocket connections under simple-websocket: every frame is written whole, one frame at a time.

simple-websocket (1.1.0, the newest release) writes a frame with one `socket.send`, which writes what fits in
the kernel's buffer and nothing more: a frame larger than that, such as the `sync` ack of a reconnecting client
that reads slowly, went out cut short and every later frame was garbage to the client (upstream:
miguelgrinberg/simple-websocket#45, fixed on its main branch, not released). Here the socket it is handed
writes the whole frame, under a lock, because its reader thread writes too (pongs, the close handshake), and
two frames' bytes must never interleave.
"""

from __future__ import annotations

import socket
import threading
from contextlib import suppress

import gevent.lock
import gevent.socket


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
        # A greenlet waiting on a thread's lock would stall every other greenlet of the process.
        self._lock = gevent.lock.Semaphore() if isinstance(sock, gevent.socket.socket) else threading.Lock()

    def send(self, data, flags: int = 0) -> int:
        with self._lock:
            if self._broken:
                raise BrokenPipeError("an earlier frame on this connection could not be written whole")
            try:
                sent = self._sock.send(data, flags)
                if sent < len(data):  # the kernel's buffer was full: write the rest as the client takes it
                    rest = memoryview(data)[sent:]
                    while rest:
                        rest = rest[self._sock.send(rest, flags) :]
            except BaseException as exc:
                self._broken = True
                with suppress(OSError):
                    self._sock.shutdown(socket.SHUT_RDWR)
                if isinstance(exc, OSError):
                    raise BrokenPipeError(f"a frame could not be written whole: {exc}") from exc
                raise
        return len(data)

    sendall = send

    def __getattr__(self, name):
        return getattr(self._sock, name)
