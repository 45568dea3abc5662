"""BSN backend: the application factory."""

from __future__ import annotations

import os
import sqlite3
import threading
import time

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import Pool

from bsn import http, logs, outages, sqlite
from bsn.config import load_settings
from bsn.extensions import cors, db, limiter, migrate, redis_store, socketio


def create_app(config: dict | None = None) -> Flask:
    app = http.BSNFlask(
        __name__, instance_path=os.environ.get("BSN_INSTANCE_PATH") or None, instance_relative_config=True
    )
    os.makedirs(app.instance_path, exist_ok=True)
    app.config.update(load_settings(app.instance_path))
    app.config.update(config or {})
    _derive_settings(app)
    logs.configure(app.config["LOG_FORMAT"], app.config["LOG_LEVEL"])

    # "/api/x" and "/api/x/" are the same call: clients use both, and a redirect would drop a POST body.
    app.url_map.strict_slashes = False
    app.json.sort_keys = False

    db.init_app(app)
    migrate.init_app(app, db, directory=os.path.join(os.path.dirname(os.path.dirname(__file__)), "migrations"))
    redis_store.init_app(app)
    if app.config["RATELIMIT_STORAGE_URI"] == app.config["REDIS_URL"]:
        # Flask-Limiter's own hits (those the token lookup did not make) wait on the same pool.
        app.config.setdefault("RATELIMIT_STORAGE_OPTIONS", {"connection_pool": redis_store.client.connection_pool})
    cors.init_app(app, origins=app.config["CORS_ORIGINS"], expose_headers=["X-Request-ID", "Retry-After"])
    # http first: its request id must exist before the limiter's check, which may already answer 429 or 503.
    http.init_app(app)
    limiter.init_app(app)
    outages.init_app(app)
    _init_socketio(app)
    _register_blueprints(app)

    from bsn import cli

    cli.init_app(app)
    return app


def _derive_settings(app: Flask) -> None:
    """Settings of the extensions, derived from BSN's own so each is configured in one place."""
    config = app.config
    uri = config["SQLALCHEMY_DATABASE_URI"]
    options = dict(config["SQLALCHEMY_ENGINE_OPTIONS"])
    if uri.startswith("postgresql"):
        options.setdefault("pool_size", config["DB_POOL_SIZE"])
        options.setdefault("max_overflow", config["DB_POOL_SIZE"])
    elif uri.startswith("sqlite"):
        options.setdefault("connect_args", sqlite.connect_args(_on_gevent()))
        if ":memory:" not in uri and uri not in ("sqlite://", "sqlite:///"):
            # Every connection a burst opens stays pooled: a new SQLite connection opens the file, runs the
            # pragmas and parses the schema, and an overflow one is closed again as soon as it is returned.
            options.setdefault("pool_size", config["DB_POOL_SIZE"] * 2)
            options.setdefault("max_overflow", config["DB_POOL_SIZE"])
    config["SQLALCHEMY_ENGINE_OPTIONS"] = options
    config.setdefault("RATELIMIT_STORAGE_URI", config["REDIS_URL"])
    config.setdefault("RATELIMIT_STRATEGY", "fixed-window")
    config.setdefault("RATELIMIT_KEY_PREFIX", "bsn-rl")
    config["RATELIMIT_SWALLOW_ERRORS"] = config["RATELIMIT_FAIL_OPEN"]
    config["RATELIMIT_HEADERS_ENABLED"] = False  # bsn.http adds them to 429 answers only
    config.update(
        API_TITLE="BSN API",
        API_VERSION="1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL="/api/docs/static/",
    )


# Instead of pool_pre_ping's round trip at every checkout: a PostgreSQL connection whose socket has
# something to read while it sits in the pool was told to go (a restart sends every backend a FATAL and
# closes it), which a poll without waiting sees; and one idle for longer than PING_IDLE_AFTER, which may
# have died silently, is pinged. The pool replaces a connection failing either check. One that dies in
# use fails its request (503), and SQLAlchemy then renews every pooled connection.
PING_IDLE_AFTER = 1.0
# Set by a task that kept a connection out of the pool (dbtools.KeptConnection) when it returns it: the time it last
# used it, which is when its idleness began.
KEPT_IDLE_SINCE = "bsn_kept_idle_since"


def _unpatched_select():
    try:
        from gevent.monkey import get_original

        return get_original("select", "select")
    except ImportError:
        import select

        return select.select


_poll_now = _unpatched_select()


@event.listens_for(Pool, "checkin")
def _idle_since(_dbapi_connection, record):
    record.info["bsn_idle_since"] = record.info.pop(KEPT_IDLE_SINCE, None) or time.monotonic()


@event.listens_for(Pool, "checkout")
def _check_idle_connection(dbapi_connection, record, proxy):
    since = record.info.get("bsn_idle_since")
    if since is None:
        return  # just connected
    dialect = proxy._pool._dialect
    try:
        if dialect.name == "postgresql" and _poll_now([dbapi_connection.fileno()], [], [], 0)[0]:
            raise DisconnectionError("the server closed the connection while it was idle")
        if time.monotonic() - since >= PING_IDLE_AFTER:
            dialect.do_ping(dbapi_connection)
    except DisconnectionError:
        raise
    except Exception as error:  # any failure: this connection cannot be trusted
        raise DisconnectionError() from error


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, _record):
    # WAL lets readers run beside the single writer; foreign keys are off by default in SQLite.
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


# SQLite allows one writer, and a blocked writer waits in C, unseen by gevent: under gevent, a greenlet
# waiting for the database lock would stall the very greenlet that holds it. So on gevent, a process's
# SQLite transactions take turns on a lock that gevent does see (threading is patched there).
_SQLITE_TURN = threading.RLock()


@event.listens_for(Engine, "begin")
def _sqlite_take_turn(connection):
    if connection.dialect.name == "sqlite" and _on_gevent():
        _SQLITE_TURN.acquire()
        connection.info["bsn_turn"] = True


@event.listens_for(Engine, "commit")
@event.listens_for(Engine, "rollback")
def _sqlite_end_turn(connection):
    # Dialect first: `info` of a connection that died mid-transaction (a PostgreSQL restart) raises.
    if connection.dialect.name == "sqlite" and connection.info.pop("bsn_turn", False):
        _SQLITE_TURN.release()


# A ping every 25 s with 20 s to answer keeps idle connections open through proxies.
PING_INTERVAL = 25
PING_TIMEOUT = 20


def _on_gevent() -> bool:
    from gevent import monkey

    return monkey.is_module_patched("threading")


def _init_socketio(app: Flask) -> None:
    from gevent import monkey

    from bsn.socketqueue import RecoveringRedisManager
    from bsn.websocket import WebSocketEnviron, write_packets_at_once

    async_mode = "gevent" if monkey.is_module_patched("socket") else "threading"
    if async_mode == "gevent":
        write_packets_at_once()
    socketio.init_app(
        app,
        async_mode=async_mode,
        client_manager=RecoveringRedisManager(app.config["REDIS_URL"], app.config["REDIS_MAX_CONNECTIONS"]),
        cors_allowed_origins=_origin_check(app.config["CORS_ORIGINS"]),
        ping_interval=PING_INTERVAL,
        ping_timeout=PING_TIMEOUT,
        max_http_buffer_size=app.config["MAX_CONTENT_LENGTH"],
        # Auth is by token on connect; nothing reads Flask's cookie session inside events.
        manage_session=False,
        # gunicorn hands each request to whichever worker accepts it: a long-polling session started on one
        # worker would meet "Invalid session" on the next, so with several workers polling is refused at once.
        transports=["websocket"] if app.config["WEB_WORKERS"] > 1 else None,
    )
    from bsn import sockets

    sockets.init_app(socketio, app.config["SOCKET_MAX_QUEUED_EVENTS"])
    app.wsgi_app = WebSocketEnviron(
        app.wsgi_app,
        compression=app.config["SOCKET_COMPRESSION"],
        # A client that takes no byte of a frame for as long as engine.io's ping allows is gone.
        stall_timeout=PING_INTERVAL + PING_TIMEOUT,
    )


def _origin_check(allowed: list[str]):
    """Socket.IO origins: the configured browser origins, the app's own pages, and non-browser clients."""

    def check(origin, environ) -> bool:
        if origin is None or origin in allowed:
            return True
        host = environ.get("HTTP_HOST", "")
        return origin in (f"http://{host}", f"https://{host}")

    return check


def _register_blueprints(app: Flask) -> None:
    from bsn.blueprints import (
        admin,
        auth,
        dao,
        groups,
        media,
        messaging,
        mining,
        moderation,
        nft,
        notifications,
        ops,
        posts,
        tokens,
        users,
    )
    from bsn.http import Api

    api = Api(
        app,
        spec_kwargs={
            "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        },
    )
    app.extensions["bsn_api"] = api
    blueprints = (
        ops,
        auth,
        users,
        posts,
        media,
        groups,
        messaging,
        notifications,
        moderation,
        mining,
        tokens,
        nft,
        dao,
        admin,
    )
    for blueprint in (module.blp for module in blueprints):
        api.register_blueprint(blueprint)
    admin.init_dashboard(app)
    from bsn.blueprints import web

    app.register_blueprint(web.blp)
