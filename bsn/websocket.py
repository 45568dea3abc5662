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

import gevent
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
    its reader, which ends the connection as if the client had gone. `stall_timeout` (gevent sockets only):
    seconds one write may wait for the client to take a byte before the client counts as gone (None: forever).
    """

    def __init__(self, sock: socket.socket, stall_timeout: float | None = None) -> None:
        self._sock = sock
        self._broken = False
        if isinstance(sock, gevent.socket.socket):
            self._lock = gevent.lock.Semaphore()
            self._stall = (
                None
                if stall_timeout is None
                else gevent.Timeout(stall_timeout, TimeoutError(f"the client took no byte in {stall_timeout:g} s"))
            )
        else:
            # Threads (the dev server): a blocking send already waits for room, and no timer can interrupt it.
            self._lock = threading.Lock()
            self._stall = None

    def send(self, data, flags: int = 0) -> int:
        with self._lock:
            if self._broken:
                raise BrokenPipeError("an earlier frame on this connection could not be written whole")
            view = memoryview(data)
            try:
                while view:
                    if self._stall is None:
                        sent = self._sock.send(view, flags)
                    else:
                        self._stall.start()
                        try:
                            sent = self._sock.send(view, flags)
                        finally:
                            self._stall.cancel()
                    view = view[sent:]
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
