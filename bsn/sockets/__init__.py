"""Socket.IO namespaces: /chat, /presence, /feed, /notifications (events in CONTRACT.md)."""

from flask_socketio import SocketIO

from bsn.outages import _TracebackOncePerMinute
from bsn.sockets.base import registry
from bsn.sockets.chat import ChatNamespace
from bsn.sockets.feed import FeedNamespace, NotificationsNamespace
from bsn.sockets.inbox import Inbox
from bsn.sockets.presence import PresenceNamespace

# One instance of each per process: they hold this process's sockets.
NAMESPACES = [ChatNamespace(), PresenceNamespace(), FeedNamespace(), NotificationsNamespace()]
registry.namespaces = NAMESPACES


# Any client, even before it authenticates, can send malformed packets at will, and python-socketio logs a
# traceback for each: the first each minute tells the operator, the rest would flood the logs.
_library_tracebacks = _TracebackOncePerMinute()


def init_app(socketio: SocketIO, max_queued_events: int) -> None:
    for namespace in NAMESPACES:
        socketio.on_namespace(namespace)
    Inbox(socketio.server, max_queued_events).install()
    for logger in (socketio.server.logger, socketio.server.eio.logger):
        # Their own stderr handlers printed every error a second time, outside the app's (JSON) log format.
        for handler in [h for h in logger.handlers if not getattr(h, "_bsn", False)]:
            logger.removeHandler(handler)
        if _library_tracebacks not in logger.filters:
            logger.addFilter(_library_tracebacks)
