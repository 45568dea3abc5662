"""503 answers while Redis or the database is unreachable: a clear, retryable error instead of a 500."""

from __future__ import annotations

import contextlib
import logging

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


def init_app(app: Flask) -> None:
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
