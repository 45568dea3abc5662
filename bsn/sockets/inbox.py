"""Each socket's events handled in the order they came, one at a time, from a small queue of its own.

python-socketio (`async_handlers`) starts a greenlet for every event the moment it is read. Under an overload
those greenlets are the backlog: some 15-20 KiB each, and nothing says in which order one client's events run.
Here a socket's events wait in its own queue as the decoded packets they are (their payload and a few words),
and one greenlet per socket with work runs them in order; the greenlets at work are at most the sockets, so the
backlog of a burst costs its payloads, not a greenlet each, and nothing needs refusing to keep memory bounded.

The engine.io reader is never held up: it only appends, so a client's engine.io pong is read at once, however
long its events wait (a reader blocked behind its own events missed the pong and dropped the connection after
the ping timeout). A socket with `max_queued` events already waiting is sent an `error` event
(`service_unavailable`, and the ack `{"error": ...}` when the event asked for one) instead of queueing more: a
well-behaved client never waits that far behind, and one that floods costs only itself. Events still waiting
when their socket disconnects are not run: their client had no ack and resends them with their `client_id`.
"""

from __future__ import annotations

import logging
import threading
from collections import deque

from socketio import packet

from bsn.errors import ServiceUnavailable

log = logging.getLogger(__name__)


class Inbox:
    """Replaces `server._handle_event` (python-socketio 5.x) with a per-socket queue; see the module's text."""

    def __init__(self, server, max_queued: int) -> None:
        self.server = server
        self.max_queued = max_queued
        self._queues: dict[str, deque] = {}  # socket.io sid -> events not yet run, the one running first
        self._refusing: set[str] = set()  # sids refused since their queue last emptied: logged once each
        self._lock = threading.Lock()

    def install(self) -> Inbox:
        # An instance attribute: python-socketio's engine.io message handler calls self._handle_event(...).
        self.server._handle_event = self.handle_event
        return self

    def waiting(self, sid: str) -> int:
        queue = self._queues.get(sid)
        return 0 if queue is None else len(queue)

    def handle_event(self, eio_sid: str, namespace: str | None, id: int | None, data: list) -> None:
        """Called by python-socketio's reader for each EVENT packet, as its own `_handle_event`."""
        server = self.server
        namespace = namespace or "/"
        sid = server.manager.sid_from_eio_sid(eio_sid, namespace)
        if not server.manager.is_connected(sid, namespace):
            log.debug("event from %s, not connected to %s: dropped", sid, namespace)
            return
        if not (isinstance(data, list | str) and data):
            # What python-socketio's own handler fails on (it reads data[0] first), failed here too, in the reader:
            # engine.io logs it (once a minute) and the connection stays. A string passes, as it did there: its
            # first character names the event, which the namespace answers as an unknown one.
            raise ValueError("an event packet must be a list, the event's name first")
        event = (eio_sid, namespace, id, data)
        if not server.async_handlers:  # Flask-SocketIO's test client runs every event inline
            self._run(sid, event)
            return
        with self._lock:
            queue = self._queues.get(sid)
            start = queue is None
            if start:
                queue = self._queues[sid] = deque((event,))
            elif len(queue) < self.max_queued:
                queue.append(event)
            else:
                queue = None
        if queue is None:
            self._refuse(sid, event)
        elif start:
            try:
                self.server.start_background_task(self._drain, sid, queue)
            except RuntimeError:  # no new task (a thread limit, shutdown): run them here, as groupcommit does
                self._drain(sid, queue)

    def _drain(self, sid: str, queue: deque) -> None:
        # The running event stays at the queue's head until it is done, so a queue in the dict means "a drain runs".
        while True:
            event = queue[0]
            try:
                if self.server.manager.is_connected(sid, event[1]):
                    self._run(sid, event)
            except BaseException:
                # This task was stopped mid-event (GreenletExit, a stray Timeout): the socket's other events get a
                # task of their own, or they would wait for ever behind a drain that no longer runs.
                if self._next(sid, queue):
                    self.server.start_background_task(self._drain, sid, queue)
                raise
            if not self._next(sid, queue):
                return

    def _next(self, sid: str, queue: deque) -> bool:
        """Drop the event just run; whether more wait (else the socket's queue is gone)."""
        with self._lock:
            queue.popleft()
            if queue:
                return True
            del self._queues[sid]
            self._refusing.discard(sid)
            return False

    def _run(self, sid: str, event: tuple) -> None:
        eio_sid, namespace, id, data = event
        try:
            self.server._handle_event_internal(self.server, sid, eio_sid, data, namespace, id)
        except Exception:
            # One event's failure must not stop the socket's others. Logged on python-socketio's logger: any client
            # can make its events fail at will, and that logger's filter (bsn/sockets) lets one traceback a minute by.
            self.server.logger.exception("socket event of %s on %s failed", sid, namespace)

    def _refuse(self, sid: str, event: tuple) -> None:
        eio_sid, namespace, id, data = event
        waiting = f"{self.max_queued} events of this connection are already waiting; send again shortly."
        body = {**ServiceUnavailable(waiting).to_dict(), "event": data[0]}
        if sid not in self._refusing:  # a flood must not flood the log too
            self._refusing.add(sid)
            log.warning("socket %s on %s: %d events waiting, refusing more", sid, namespace, self.max_queued)
        send = self.server._send_packet
        send(eio_sid, self.server.packet_class(packet.EVENT, namespace=namespace, data=["error", body]))
        if id is not None:
            send(eio_sid, self.server.packet_class(packet.ACK, namespace=namespace, id=id, data=[{"error": body}]))
