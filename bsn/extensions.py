"""The Flask extensions, created unbound here and bound to an app in `create_app`."""

from __future__ import annotations

import redis
from flask import Flask, current_app, g, request
from flask_cors import CORS
from flask_limiter import Limiter
from flask_migrate import Migrate
from flask_socketio import SocketIO
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

# Named constraints make Alembic migrations reproducible on SQLite and PostgreSQL alike.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
cors = CORS()
socketio = SocketIO()


def _rate_limit_key() -> str:
    # Authenticated callers are limited per user, anonymous ones per address.
    from bsn.auth import current_caller_or_none

    caller = current_caller_or_none()
    if caller is not None:
        return f"user:{caller.id}"
    return f"ip:{request.remote_addr or 'unknown'}"


def _default_limit() -> str:
    from bsn.auth import current_caller_or_none

    key = "RATELIMIT_USER" if current_caller_or_none() is not None else "RATELIMIT_ANON"
    return current_app.config[key]


limiter = Limiter(key_func=_rate_limit_key, default_limits=[_default_limit])


class RedisHolder:
    """One Redis client per process, shared by caches, liveness records and rate limits."""

    def __init__(self) -> None:
        self._client: redis.Redis | None = None

    def init_app(self, app: Flask) -> None:
        self._client = redis.Redis.from_url(
            app.config["REDIS_URL"], socket_timeout=5, socket_connect_timeout=5, health_check_interval=30
        )
        app.extensions["bsn_redis"] = self._client

    @property
    def client(self) -> redis.Redis:
        try:
            return current_app.extensions["bsn_redis"]
        except RuntimeError:
            if self._client is None:
                raise
            return self._client


redis_store = RedisHolder()


def request_id() -> str | None:
    return getattr(g, "request_id", None)
