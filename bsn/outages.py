"""503 answers while Redis or the database is unreachable: a clear, retryable error instead of a 500."""

from __future__ import annotations

import logging

import redis
from flask import Flask, g, jsonify
from sqlalchemy import exc as sa_exc

from bsn.errors import envelope

log = logging.getLogger("bsn.outages")

RETRY_AFTER = 5  # seconds: long enough for a restart of Redis or PostgreSQL, short enough for a person

# Connection-level failures only: a constraint or syntax error stays a 4xx/500 as before.
_REDIS = (redis.ConnectionError, redis.TimeoutError)
_DATABASE = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)


def init_app(app: Flask) -> None:
    for error in (*_REDIS, *_DATABASE):
        app.register_error_handler(error, _unavailable)


def _unavailable(error: Exception):
    part = "redis" if isinstance(error, _REDIS) else "database"
    log.error("%s unavailable: %s: %s", part, type(error).__name__, str(error).splitlines()[0] if str(error) else "")
    body = envelope(
        "service_unavailable",
        "A service this call needs is unavailable for the moment; try again shortly.",
        request_id=getattr(g, "request_id", None),
    )
    response = jsonify(body)
    response.status_code = 503
    response.headers["Retry-After"] = str(RETRY_AFTER)
    return response
