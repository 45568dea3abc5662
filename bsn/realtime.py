"""Publishing realtime events: through the Socket.IO Redis message queue, from web and worker alike.

Services call these only after their transaction has committed.
"""

from __future__ import annotations

import logging
from datetime import datetime

from bsn.clock import isoformat
from bsn.extensions import socketio

log = logging.getLogger(__name__)

NOTIFICATIONS = "/notifications"


def user_room(user_id: int) -> str:
    return f"user:{user_id}"


def jsonable(value):
    if isinstance(value, datetime):
        return isoformat(value)
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def emit(event: str, data: dict, namespace: str, room: str | list[str]) -> None:
    """To a room, or to several (one publish, and a socket in more than one gets the event once)."""
    try:
        socketio.emit(event, jsonable(data), namespace=namespace, to=room)
    except Exception:
        log.exception("could not publish %s to %s%s", event, namespace, room)


def socket_manager():
    """python-socketio's client manager: it moves sockets of any process in and out of rooms."""
    return socketio.server.manager


def notify_user(user_id: int, event: str, data: dict) -> None:
    emit(event, data, NOTIFICATIONS, user_room(user_id))


def on_commit(callback) -> None:
    """Run `callback` once the current transaction commits (dropped if it rolls back), as Zulip sends events.

    The callback runs inside SQLAlchemy's after_commit hook: it may publish, but not query.
    """
    from bsn.extensions import db

    db.session.info.setdefault("bsn_on_commit", []).append(callback)


def _install_session_hooks() -> None:
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    @event.listens_for(Session, "after_commit")
    def _run(session):
        callbacks = session.info.pop("bsn_on_commit", [])
        for callback in callbacks:
            try:
                callback()
            except Exception:
                log.exception("after-commit callback failed")

    @event.listens_for(Session, "after_rollback")
    def _drop(session):
        session.info.pop("bsn_on_commit", None)


_install_session_hooks()
