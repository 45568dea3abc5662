"""What every Socket.IO namespace shares: token auth on connect, payload validation, rate limits, error events."""

from __future__ import annotations

import logging
import threading
from collections import Counter

import redis
from flask import current_app, request
from flask_socketio import Namespace, emit, join_room
from limits import parse
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter
from marshmallow import Schema
from marshmallow import ValidationError as SchemaError
from socketio.exceptions import ConnectionRefusedError as Refused

from bsn import outages, realtime
from bsn.actors import Caller
from bsn.errors import BSNError, RateLimited, ServiceUnavailable, ValidationError
from bsn.extensions import db, redis_store
from bsn.schemas.common import UNSTORABLE, unstorable
from bsn.services import accounts, presence

log = logging.getLogger(__name__)


MAX_TOKEN_LENGTH = 512
# python-socketio's own events: never a client's to trigger.
LIFECYCLE = ("connect", "disconnect")


class BSNNamespace(Namespace):
    """A namespace whose sockets belong to an authenticated user.

    Handlers are `on_<event>(self, caller, payload)`; a BSNError or bad payload becomes an `error`
    event with a code (and the handler's ack gets `{"error": ...}`), and the connection stays.
    """

    # event name -> payload schema; events not listed take no payload
    schemas: dict[str, type[Schema]] = {}

    def __init__(self, namespace: str) -> None:
        super().__init__(namespace)
        self.callers: dict[str, int] = {}  # sid -> user id, for this process's sockets
        self.users_here: Counter[int] = Counter()  # user id -> how many of those sockets are theirs
        self._lock = threading.Lock()
        self._limiter: MovingWindowRateLimiter | None = None
        self._schema_instances: dict[str, Schema] = {}
        self._limits: dict[str, object] = {}  # SOCKET_RATE_LIMIT text -> its parsed limit

    # ---- connection ----

    def on_connect(self, auth=None):
        token = auth.get("token") if isinstance(auth, dict) else None
        # Tokens are short ASCII strings; anything else is none (a lone surrogate could not even be hashed).
        valid = isinstance(token, str) and token.isascii() and 0 < len(token) <= MAX_TOKEN_LENGTH
        user_id = accounts.user_id_for_token(token) if valid else None
        # The token's read is done: no transaction (nor SQLite turn, which others wait for holding a pooled
        # connection) may stay open across the Redis round trips below.
        db.session.rollback()
        if user_id is None:
            # Refused before any event: Socket.IO clients get a connect_error with this message.
            raise Refused("unauthorized: send auth {token: <bearer token>}")
        sid = request.sid
        try:
            join_room(realtime.user_room(user_id))
            presence.connected(user_id, self._connection(sid))
            db.session.rollback()
            registry.started(current_app._get_current_object())
            self.connected(Caller(user_id))
            if not self._transport_open(sid):
                raise ConnectionAbortedError("the client left while its connect ran")
        except Exception:
            # python-socketio runs no disconnect for a connect that failed, nor for a client that left while it
            # ran: undone here, and refused, so that python-socketio also takes the socket out of its rooms.
            self._undo_connect(user_id, sid)
            log.warning("connect of user %s on %s failed", user_id, self.namespace, exc_info=True)
            raise Refused("service_unavailable: connect again shortly") from None
        # Only now is the socket known, and nothing since the check above could switch greenlets and close it.
        with self._lock:
            self.callers[sid] = user_id
            self.users_here[user_id] += 1

    def _transport_open(self, sid: str) -> bool:
        eio_sid = self.server.manager.eio_sid_from_sid(sid, self.namespace)
        return eio_sid is not None and eio_sid in self.server.eio.sockets

    def _undo_connect(self, user_id: int, sid: str) -> None:
        try:
            self._release(user_id, sid)
        except Exception:  # the sweep drops a connection nobody refreshes
            log.warning("presence of a failed connect left to the sweep", exc_info=True)

    def _release(self, user_id: int, sid: str) -> None:
        self.disconnected(Caller(user_id))
        presence.disconnected(user_id, self._connection(sid))

    def on_disconnect(self, reason=None):
        with self._lock:
            user_id = self.callers.pop(request.sid, None)
            if user_id is not None:
                self.users_here[user_id] -= 1
                if self.users_here[user_id] <= 0:
                    del self.users_here[user_id]
        if user_id is not None:
            self._release(user_id, request.sid)

    def connected(self, caller: Caller) -> None:
        """Hook for subclasses: the socket is authenticated and in its user room."""

    def disconnected(self, caller: Caller) -> None:
        """Hook for subclasses."""

    def _connection(self, sid: str) -> str:
        return f"{self.namespace}|{sid}"

    def local_connections(self) -> dict[int, set[str]]:
        with self._lock:
            items = list(self.callers.items())
        result: dict[int, set[str]] = {}
        for sid, user_id in items:
            result.setdefault(user_id, set()).add(self._connection(sid))
        return result

    # ---- events ----

    def trigger_event(self, event, *args):
        if event in LIFECYCLE and self._from_server(event, args[0]):
            return super().trigger_event(event, *args)
        # Every other event, known or not, runs through _dispatch inside Flask-SocketIO's request context.
        return self.socketio._handle_event(self._dispatch, event, self.namespace, *args)

    def _from_server(self, event: str, sid: str) -> bool:
        """Whether python-socketio itself runs this connect or disconnect, not a client emitting an event so named.

        python-socketio runs connect while the socket is only pre-connected, and disconnect once it no longer
        counts as connected; a client's events are dispatched only while it is fully connected. Run as a
        handler, a client's `disconnect` would drop its presence and identity with the socket still open, and
        its `connect` would authenticate the socket again with whatever token it names.
        """
        manager = self.server.manager
        if event == "connect":
            return manager.is_pre_connected(sid, self.namespace)
        return not manager.is_connected(sid, self.namespace)

    def _dispatch(self, *args):
        event = request.event["message"]
        known = isinstance(event, str) and event.isidentifier() and event not in LIFECYCLE
        handler = getattr(self, "on_" + event, None) if known else None
        user_id = self.callers.get(request.sid)
        if handler is None or user_id is None:
            return self._error(event, BSNError(f"Unknown event {event!r}.", code="unknown_event"))
        try:
            self.admit(event)
            self._rate_limit(user_id, event)
            payload = self._payload(event, args)
            return handler(Caller(user_id), payload)
        except BSNError as exc:
            return self._error(event, exc)
        except outages.OUTAGES as exc:
            outages.log_outage(exc)
            return self._error(event, ServiceUnavailable())
        except Exception:
            log.exception("socket event %s%s failed", self.namespace, event)
            return self._error(event, BSNError("Something went wrong on our side.", code="internal_error"))

    def admit(self, event: str) -> None:
        """Hook for subclasses: raise to refuse an event before it costs anything (rate limit, validation)."""

    def _payload(self, event: str, args: tuple):
        schema = self.schemas.get(event)
        if schema is None:
            return None
        data = args[0] if args else None
        if not isinstance(data, dict):
            raise ValidationError("The payload must be a JSON object.", code="invalid_payload")
        instance = self._schema_instances.get(event)
        if instance is None:
            # One instance per event, reused: building a marshmallow schema copies all its fields.
            instance = self._schema_instances[event] = schema()
        try:
            loaded = instance.load(data)
        except SchemaError as exc:
            raise ValidationError(fields=exc.normalized_messages()) from None
        # The same rule as REST bodies: text no database stores is refused by field name, on both databases.
        bad = {key: [UNSTORABLE] for key, value in loaded.items() if unstorable(value)}
        if bad:
            raise ValidationError(fields=bad)
        return loaded

    def _rate_limit(self, user_id: int, event: str) -> None:
        config = current_app.config
        if not config["RATELIMIT_ENABLED"]:
            return
        text = config["SOCKET_RATE_LIMIT"]
        limit = self._limits.get(text)
        if limit is None:
            limit = self._limits[text] = parse(text)
        try:
            if self._limiter is None:
                # A moving window: a burst across a window boundary cannot double the limit.
                storage = _BatchedStorage(config["REDIS_URL"], connection_pool=redis_store.client.connection_pool)
                self._limiter = MovingWindowRateLimiter(storage)
            allowed = self._limiter.hit(limit, "socket", self.namespace, str(user_id))
        except redis.RedisError:
            if not config["RATELIMIT_FAIL_OPEN"]:
                raise ServiceUnavailable() from None
            allowed = True
        if not allowed:
            raise RateLimited(f"Too many events: the limit is {limit}.")

    def _error(self, event: str, error: BSNError):
        body = {**error.to_dict(), "event": event}
        emit_to_caller("error", body)
        return {"error": body}


def emit_to_caller(event: str, data: dict) -> None:
    """Send an event to the socket whose event is being handled: it is connected to this very process, so
    straight to it, not through the Redis queue (a flood of refused events must not also flood Redis)."""
    emit(event, data, ignore_queue=True)


class _BatchedStorage(RedisStorage):
    """The limits library's Redis storage, whose moving-window hit (its own Lua script, unchanged) goes out
    in the pipelined round trip of concurrent events' and requests' scripts (`redis_store.run_script`):
    one round trip per event each on its own pooled connection was a quarter of the CPU under a burst."""

    def initialize_storage(self, uri: str) -> None:
        super().initialize_storage(uri)
        acquire = self.lua_acquire_moving_window
        self.lua_acquire_moving_window = lambda keys, args: redis_store.run_script(acquire, keys, args)


class ConnectionRegistry:
    """Keeps this process's connections fresh in Redis (presence), from one background task."""

    def __init__(self) -> None:
        self.namespaces: list[BSNNamespace] = []
        self._started = False
        self._lock = threading.Lock()

    def started(self, app) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
        from bsn.extensions import socketio

        socketio.start_background_task(self._refresh_forever, app)

    def _alive(self, connection: str) -> bool:
        """Whether a connection named by BSNNamespace._connection is still open on this process."""
        name, _, sid = connection.partition("|")
        return any(namespace.namespace == name and sid in namespace.callers for namespace in self.namespaces)

    def _refresh_forever(self, app) -> None:
        from bsn.extensions import socketio

        while True:
            socketio.sleep(app.config["PRESENCE_REFRESH_INTERVAL"])
            try:
                with app.app_context():
                    merged: dict[int, set[str]] = {}
                    for namespace in self.namespaces:
                        for user_id, members in namespace.local_connections().items():
                            merged.setdefault(user_id, set()).update(members)
                    presence.refresh(merged, self._alive)
            except Exception:
                log.exception("presence refresh failed")


registry = ConnectionRegistry()
