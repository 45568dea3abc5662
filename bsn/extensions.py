"""The Flask extensions, created unbound here and bound to an app in `create_app`."""

from __future__ import annotations

import os
from collections.abc import Callable

import redis
from flask import Flask, current_app, g, has_request_context, request
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


USER_KEY = "user:{}"


def _rate_limit_key() -> str:
    # Authenticated callers are limited per user, anonymous ones per address.
    from bsn.auth import current_caller_or_none

    caller = current_caller_or_none()
    if caller is not None:
        return USER_KEY.format(caller.id)
    return f"ip:{request.remote_addr or 'unknown'}"


def _default_limit() -> str:
    # Flask-Limiter asks for the default limit only when it applies to the request, and before it hits
    # anything: the token lookup can make the per-user hits in its own round trip.
    from bsn.auth import caller_hitting

    key = "RATELIMIT_USER" if caller_hitting(_user_limit_hits) is not None else "RATELIMIT_ANON"
    return current_app.config[key]


_MARK = "\x00"  # stands for the user id in a key built by the limits library


def _user_limit_hits():
    """The counters Flask-Limiter will hit for RATELIMIT_USER in this request, as `accounts.RateHit`s.

    Keys are built by the limits library itself (RateLimitItem.key_for, the storage's prefixed_key),
    with a mark where the user id goes. None are made ahead (so Flask-Limiter hits them itself) when
    its hit would differ from the lookup's INCRBY-then-EXPIRE: another strategy, another storage, a
    cost or a deduct_when on the defaults.
    """
    from limits import parse_many

    from bsn.services.accounts import RateHit

    config = current_app.config
    if (
        config.get("RATELIMIT_STRATEGY") != "fixed-window"
        or config.get("RATELIMIT_STORAGE_URI") != config["REDIS_URL"]
        or set(config.get("RATELIMIT_STORAGE_OPTIONS") or ()) - {"connection_pool"}
        or config.get("RATELIMIT_DEFAULTS_COST", 1) != 1
        or config.get("RATELIMIT_DEFAULTS_DEDUCT_WHEN")
        or config.get("RATELIMIT_DEFAULTS_EXEMPT_WHEN")
    ):
        return ()
    scope = limiter.identify_request()
    if not scope:
        return ()
    if config.get("RATELIMIT_DEFAULTS_PER_METHOD"):
        scope += ":" + request.method.upper()
    prefix = config.get("RATELIMIT_KEY_PREFIX")
    cache = current_app.extensions.setdefault("bsn_user_limit_hits", {})
    cache_key = (config["RATELIMIT_USER"], prefix, scope)
    hits = cache.get(cache_key)
    if hits is None:
        storage = limiter.storage
        hits = []
        for item in parse_many(config["RATELIMIT_USER"]):
            key = storage.prefixed_key(item.key_for(*([prefix] if prefix else []), USER_KEY.format(_MARK), scope))
            before, _, after = key.partition(_MARK)
            hits.append(RateHit(before, after, item.get_expiry(), item.amount))
        hits = cache[cache_key] = tuple(hits)
    return hits


def _own() -> None:
    # Marks the request: the token lookup's hits were not all of the limiter's (bsn/auth.hits_made_ahead).
    from bsn.auth import OWN_HITS

    if has_request_context():
        request.environ[OWN_HITS] = True


class _PrehitStrategy:
    """Flask-Limiter's rate-limit strategy, except for hits the request's token lookup already made."""

    def __init__(self, strategy, storage) -> None:
        self.strategy, self.storage = strategy, storage

    def hit(self, item, *identifiers, cost: int = 1) -> bool:
        from bsn.auth import PREHITS

        made = request.environ.get(PREHITS) if has_request_context() else None
        key = self.storage.prefixed_key(item.key_for(*identifiers)) if made else None
        if key is not None and key in made:
            count = made.pop(key)
            if count is None:  # the lookup was to hit it but could not (Redis failed it)
                return self.strategy.hit(item, *identifiers, cost=cost)
            if cost == 1:
                return count <= item.amount
            _own()
            return self.strategy.hit(item, *identifiers, cost=cost - 1)
        _own()
        return self.strategy.hit(item, *identifiers, cost=cost)

    def test(self, item, *identifiers, cost: int = 1) -> bool:
        _own()
        return self.strategy.test(item, *identifiers, cost=cost)

    def __getattr__(self, name):
        return getattr(self.strategy, name)


class BSNLimiter(Limiter):
    """Flask-Limiter, with the per-user default limit hit inside the token lookup's round trip.

    Everything else (which limits apply, keys, 429 with Retry-After and X-RateLimit-*, swallowing
    errors when RATELIMIT_FAIL_OPEN) stays Flask-Limiter's: only the hit of a counter the lookup has
    already incremented is answered from its count instead of another round trip.
    """

    @property
    def limiter(self):
        strategy = super().limiter
        wrapped = self.__dict__.get("_bsn_prehit")
        if wrapped is None or wrapped.strategy is not strategy:
            wrapped = self.__dict__["_bsn_prehit"] = _PrehitStrategy(strategy, self.storage)
        return wrapped


limiter = BSNLimiter(key_func=_rate_limit_key, default_limits=[_default_limit])


# How long a Redis call waits for a free pooled connection before it fails (as an outage would).
POOL_WAIT_SECONDS = 5


def redis_pool(url: str, max_connections: int) -> redis.BlockingConnectionPool:
    """A Redis connection pool on which a call waits for a free connection, up to POOL_WAIT_SECONDS.

    redis-py's default pool fails at once past its size ("Too many connections"): on gevent, a burst of a
    thousand socket events made as many greenlets reach for Redis together, and the failures (each answered
    with an error event, itself published through Redis) fed on themselves until almost nothing was stored.
    """
    return redis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=POOL_WAIT_SECONDS,
        socket_timeout=5,
        socket_connect_timeout=5,
        health_check_interval=30,
    )


class RedisHolder:
    """One Redis client per process, shared by caches, liveness records and rate limits."""

    def __init__(self) -> None:
        self._client: redis.Redis | None = None

    def init_app(self, app: Flask) -> None:
        config = app.config
        self._client = redis.Redis(connection_pool=redis_pool(config["REDIS_URL"], config["REDIS_MAX_CONNECTIONS"]))
        app.extensions["bsn_redis"] = self._client

    @property
    def client(self) -> redis.Redis:
        try:
            return current_app.extensions["bsn_redis"]
        except RuntimeError:
            if self._client is None:
                raise
            return self._client

    def script(self, source: str):
        """The registered Lua script for `source`, one per app (redis-py then calls it by its SHA)."""
        scripts = current_app.extensions.setdefault("bsn_scripts", {})
        registered = scripts.get(source)
        if registered is None:
            registered = scripts[source] = self.client.register_script(source)
        return registered

    def run_script(self, script, keys: list, args: list):
        """`script(keys=keys, args=args)`, sent together with the scripts of concurrent requests on gevent."""
        return self._batcher().call(script, keys, args)

    def run_commands(self, commands: list[tuple]) -> list:
        """Redis commands (tuples of their arguments), sent as they are in the same round trips as `run_script`'s
        scripts; their replies. A command Redis refuses raises its error (after the others ran)."""
        return self._batcher().commands(commands)

    def _batcher(self) -> ScriptBatcher:
        batcher = current_app.extensions.get("bsn_script_batcher")
        if batcher is None:
            batcher = current_app.extensions["bsn_script_batcher"] = ScriptBatcher(self.client)
        return batcher


# How long a batched call waits for its reply: a free pooled connection, then a slow reply, and a retry
# when Redis had lost the script.
CALL_TIMEOUT = POOL_WAIT_SECONDS + 10


class ScriptBatcher:
    """Sends the Redis scripts (and command lists) of concurrent requests in one pipelined round trip (on gevent).

    Under gevent a round trip costs far more CPU than the scripts it runs (a send, a poll of the
    pooled connection, a wait for the reply), so while one batch is on the wire the next calls queue
    up and go together. Without gevent (tests, CLI) a call goes straight through.

    Only one batch is on the wire at a time, so the batcher keeps one connection of the pool for
    itself and writes and reads it directly: redis-py's pipeline would check a connection out and
    in for every batch (with a poll of its socket each time) and record metrics per command, which
    cost as much as the scripts' replies (about a tenth of a cached REST read).
    """

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.pending: list = []
        self.flushing = False
        self.connection = None
        self.pid = os.getpid()

    def commands(self, commands: list[tuple]) -> list:
        """The replies of these commands, sent in the batch (the first error among them is raised)."""
        return self.call(None, commands, None)

    def call(self, script, keys: list, args: list | None):
        """A script's reply; with `script` None, `keys` are plain commands and the answer is their replies."""
        if not on_gevent():
            if script is not None:
                return script(keys=keys, args=args)
            return _raise_first_error(self._direct(keys))
        import gevent

        try:
            return self._queue(script, keys, args).get(timeout=CALL_TIMEOUT)
        except gevent.Timeout:
            # gevent's Timeout is a BaseException, which no handler of a Redis failure would catch.
            raise redis.TimeoutError("no reply from Redis in time") from None

    def send(self, commands: list[tuple], failed: Callable[[BaseException], None]) -> None:
        """Send these commands in the next batch without waiting for their replies; `failed(error)` is called if
        they fail. Calls go out in the order they were made. Without gevent they are sent at once."""
        if not on_gevent():
            try:
                _raise_first_error(self._direct(commands))
            except redis.RedisError as exc:
                failed(exc)
            return

        def told(result) -> None:
            if not result.successful():
                import gevent

                gevent.spawn(failed, result.exception)  # links run in the hub, where nothing may block (a lock)

        self._queue(None, commands, None).rawlink(told)

    def _queue(self, script, keys: list, args: list | None):
        from gevent.event import AsyncResult

        if self.pid != os.getpid():
            # Forked: the parent's socket, and the calls it was sending, are not ours.
            self.connection, self.pending, self.flushing, self.pid = None, [], False, os.getpid()
        result = AsyncResult()
        self.pending.append((script, keys, args, result))
        if not self.flushing:
            import gevent

            self.flushing = True
            gevent.spawn(self._flush)
        return result

    def _flush(self) -> None:
        try:
            while self.pending:
                batch, self.pending = self.pending, []
                try:
                    replies = self._execute(batch)
                except Exception as exc:  # noqa: BLE001 - every waiting request gets the failure
                    replies = [exc] * len(batch)
                for (script, _, _, result), reply in zip(batch, replies, strict=True):
                    try:
                        result.set(_raise(reply) if script is not None else _raise_first_error(reply))
                    except Exception as exc:  # noqa: BLE001 - handed to the waiting request
                        result.set_exception(exc)
        finally:
            self.flushing = False

    def _execute(self, batch: list) -> list:
        """Per call: a script's reply or error, or the list of a command call's replies (or what failed it)."""
        # EVALSHA straight into the pipeline: redis-py's Script on a pipeline would first ask SCRIPT EXISTS,
        # a second round trip per batch. A script Redis lost (restart, SCRIPT FLUSH) did not run: it is
        # loaded and its calls are sent again.
        replies = self._send([(script, keys, args) for script, keys, args, _ in batch])
        missing = [
            i
            for i, reply in enumerate(replies)
            if batch[i][0] is not None and isinstance(reply, redis.exceptions.NoScriptError)
        ]
        if missing:
            try:
                for script in {id(batch[i][0]): batch[i][0] for i in missing}.values():
                    script.sha = self.client.script_load(script.script)
                again = self._send([batch[i][:3] for i in missing])
            except Exception as exc:  # noqa: BLE001 - only the calls that have not run fail
                again = [exc] * len(missing)
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        return replies

    def _send(self, calls: list) -> list:
        groups = [
            keys if script is None else [("EVALSHA", script.sha, len(keys), *keys, *args)]
            for script, keys, args in calls
        ]
        answers = self._round_trip(groups)
        return [
            answer if script is None or isinstance(answer, Exception) else answer[0]
            for (script, _, _), answer in zip(calls, answers, strict=True)
        ]

    def _direct(self, commands: list):
        # Without gevent, threads may call at once: a pooled connection of this call's own (the pool's
        # check-out notices one that Redis closed).
        pool = self.client.connection_pool
        connection = pool.get_connection()
        try:
            return self._round_trip([commands], connection)[0]
        finally:
            pool.release(connection)

    def _round_trip(self, groups: list[list[tuple]], connection=None, fresh: bool = False) -> list:
        """Per group of commands: their replies (a refused command's error in its place), or the DataError that
        kept the group from being sent. On the batcher's own connection unless `connection` is given."""
        own = connection is None
        if own:
            connection = self._connection()
        packed, answers = [], []
        for group in groups:
            try:
                packed += connection.pack_commands(group)
                answers.append([])
            except redis.DataError as error:  # a value Redis cannot take: that call fails, not the batch
                answers.append(error)
        read = 0
        try:
            connection.send_packed_command([b"".join(packed)])  # one write for the whole batch
            for group, answer in zip(groups, answers, strict=True):
                if isinstance(answer, Exception):
                    continue
                for _ in group:
                    try:
                        answer.append(connection.read_response())
                    except redis.ResponseError as error:
                        answer.append(error)
                    read += 1
            return answers
        except BaseException as failure:
            # A failure or a timeout mid-reply leaves unread replies behind: the connection is spoilt.
            if own:
                self._drop()
            else:
                connection.disconnect()
            if own and not fresh and read == 0 and isinstance(failure, redis.ConnectionError):
                # The connection kept here was closed by Redis while it sat idle (a restart), which the pool's
                # check-out would have noticed: once more on a new one. Nothing was answered: on a connection
                # Redis had closed, nothing ran (one that died with the batch on the wire fails the retry too).
                return self._round_trip(groups, fresh=True)
            raise

    def _connection(self):
        if self.connection is None:
            self.connection = self.client.connection_pool.get_connection()
        return self.connection

    def _drop(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None:
            connection.disconnect()
            self.client.connection_pool.release(connection)


def _raise(reply):
    if isinstance(reply, Exception):
        raise reply
    return reply


def _raise_first_error(replies):
    """A command list's replies, unless they (a failed round trip) or one of them (EXEC's too) is an error."""
    _raise(replies)
    for reply in replies:
        if isinstance(reply, list):
            _raise_first_error(reply)
        else:
            _raise(reply)
    return replies


def on_gevent() -> bool:
    """Whether this process runs on gevent (its sockets are patched): the web process, not workers or tests."""
    from gevent import monkey

    return monkey.is_module_patched("socket")


redis_store = RedisHolder()


def request_id() -> str | None:
    return getattr(g, "request_id", None)
