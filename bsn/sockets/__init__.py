"""Socket.IO namespaces: /chat, /presence, /feed, /notifications (events in CONTRACT.md)."""

from flask_socketio import SocketIO

from bsn.sockets.base import registry
from bsn.sockets.chat import ChatNamespace
from bsn.sockets.feed import FeedNamespace, NotificationsNamespace
from bsn.sockets.presence import PresenceNamespace

# One instance of each per process: they hold this process's sockets.
NAMESPACES = [ChatNamespace(), PresenceNamespace(), FeedNamespace(), NotificationsNamespace()]
registry.namespaces = NAMESPACES


def init_app(socketio: SocketIO) -> None:
    for namespace in NAMESPACES:
        socketio.on_namespace(namespace)
