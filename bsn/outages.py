"""503 answers while Redis or the database is unreachable: a clear, retryable error instead of a 500."""

from __future__ import annotations

import contextlib
import logging
import time

import redis
from flask import Flask, g, jsonify
from sqlalchemy import exc as sa_exc

from bsn.errors import ServiceUnavailable, envelope
from bsn.extensions import db

log = logging.getLogger("bsn.outages")

RETRY_AFTER = 5  # seconds: long enough for a restart of Redis or PostgreSQL, short enough for a person

# Connection-level failures only: a constraint or syntax error stays a 4xx/500 as before.
_REDIS = (redis.ConnectionError, redis.TimeoutError)
_DATABASE = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)
OUTAGES = (*_REDIS, *_DATABASE)


class _TracebackOncePerMinute(logging.Filter):
    """While Redis is down and limits fail open, Flask-Limiter logs a traceback for every single call: the
    first each minute tells the operator; the rest would only flood the logs when they are needed most."""

    def __init__(self) -> None:
        super().__init__()
        self.last = float("-inf")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info is None:
            return True
        now = time.monotonic()
        if now - self.last < 60:
            return False
        self.last = now
        return True


_limiter_log_filter = _TracebackOncePerMinute()


def init_app(app: Flask) -> None:
    limiter_log = logging.getLogger("flask-limiter")
    if _limiter_log_filter not in limiter_log.filters:
        limiter_log.addFilter(_limiter_log_filter)
    for error in OUTAGES:
        app.register_error_handler(error, _unavailable)
    # Registered after Flask-SQLAlchemy's own teardown, so it runs first (teardowns run in reverse).
    app.teardown_appcontext(_end_session)


def _end_session(_exc: BaseException | None) -> None:
    """End the request's session even when its connection died (a database restart mid-request).

    The rollback of a dead connection raises; raised in a teardown, it escapes Flask, and the answer
    already made (often a 503, sometimes a 201 that did commit) would become a bare 500 from gunicorn.
    The failed rollback has invalidated the connection, so a second close just discards it.
    """
    try:
        db.session.remove()
    except _DATABASE as error:
        log.warning("database connection lost at the end of a request: %s", type(error).__name__)
        with contextlib.suppress(*_DATABASE):
            db.session.remove()


def log_outage(error: Exception) -> None:
    part = "redis" if isinstance(error, _REDIS) else "database"
    log.error("%s unavailable: %s: %s", part, type(error).__name__, str(error).splitlines()[0] if str(error) else "")


def _unavailable(error: Exception):
    log_outage(error)
    body = envelope(ServiceUnavailable.code, ServiceUnavailable.message, request_id=getattr(g, "request_id", None))
    response = jsonify(body)
    response.status_code = 503
    response.headers["Retry-After"] = str(RETRY_AFTER)
    return response
