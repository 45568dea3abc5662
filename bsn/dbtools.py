"""Database helpers: what differs by backend (row locks, upserts), page cursors, hot-path statements and connection."""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
import weakref

from sqlalchemy import Select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError

from bsn.errors import NotFound, ValidationError
from bsn.extensions import db


def is_sqlite() -> bool:
    # The engine's dialect: asking the session would make one where the caller has none (the storing tasks).
    return db.engine.dialect.name == "sqlite"


def end_transaction() -> None:
    """End the session's transaction, if this context has a session at all: a caller that waits its turn in a
    group commit holds nothing meanwhile (on gevent an open SQLite transaction holds the process's writer turn,
    which the storing task needs). A call that never made a session, as the fast lanes', is not given one."""
    if db.session.registry.has():
        db.session.rollback()


def lock(stmt: Select, model, where):
    """Run `stmt` holding a write lock on what it reads, until the transaction ends.

    PostgreSQL: SELECT ... FOR UPDATE. SQLite has no row locks: a no-op UPDATE of the same rows
    takes the database's write lock first (pysqlite opens the transaction at the first write), so
    two read-modify-write transactions can never interleave.
    """
    if is_sqlite():
        pk = model.__mapper__.primary_key[0]
        db.session.execute(
            update(model).where(where).values({pk.name: pk}).execution_options(synchronize_session=False)
        )
        return db.session.execute(stmt)
    return db.session.execute(stmt.with_for_update(of=model))


def insert_ignore(model, rows: list[dict], index_elements: list[str]) -> int:
    """INSERT ... ON CONFLICT DO NOTHING, on either backend; returns how many rows were really added."""
    if not rows:
        return 0
    insert = sqlite_insert if is_sqlite() else pg_insert
    pk = model.__mapper__.primary_key[0]
    # Counted through RETURNING (only added rows come back): a multi-row INSERT's rowcount can be -1.
    statement = insert(model).values(rows).on_conflict_do_nothing(index_elements=index_elements).returning(pk)
    return len(db.session.execute(statement).all())


def read_only(statement, params: dict) -> list:
    """The rows of one read-only statement of columns, run in autocommit on a connection of its own.

    One statement sees one consistent snapshot by itself, so no BEGIN and ROLLBACK round trips around it;
    the session's transaction is untouched. (On SQLite it still takes its turn: the engine events fire.)
    """
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        return connection.execute(statement, params).all()


class Prepared:
    """A Core statement compiled once per dialect and run straight on the DBAPI cursor: for the few small statements
    a hot path runs on every call (a chat send runs four).

    Why: on such statements SQLAlchemy's execute (cache key, execution context, result object) is several times
    the database's own work, and on a web process that idles between events that code runs cold. It was most of a
    chat send's latency: the same four statements took 1.3 ms through execute() and 0.3 ms on the cursor, with
    10 ms of idle between sends.

    What stays as with execute():
    - values go through the dialect's own bind processors (UTC datetimes, JSON), so they are stored the same;
    - driver errors are raised as SQLAlchemy's (IntegrityError, OperationalError, ...), and a connection found
      lost is invalidated, with the pool's others;
    - a connection outside a transaction begins one first, with the engine's begin events;
    - the engine's before/after_cursor_execute events fire (statement recorders, tracers).
    What differs: rows are the driver's tuples, without result processing, so only columns the driver already
    returns as wanted (integers, text) may be read through it. A statement with an expanding IN is rendered anew
    for every call, so it runs through execute() and its rows are SQLAlchemy's (which index the same).
    """

    def __init__(self, statement) -> None:
        self.statement = statement
        # dialect -> (sql, bind names in order for a positional paramstyle or None, {name: bind processor});
        # None: this statement runs through execute(). Weak: tests make many apps, each with its engine.
        self._plans: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def rows(self, connection, params: dict) -> list:
        """Run once with `params` (bind name -> value) on `connection` (a SQLAlchemy Connection); its rows."""
        plan = self._plan(connection.dialect)
        if plan is None:
            return connection.execute(self.statement, params).all()
        return self._run(connection, plan, False, self._args(plan, params))

    def run_many(self, connection, many: list[dict]) -> None:
        """Run once for each parameter set of `many`, in one executemany (statements without RETURNING)."""
        plan = self._plan(connection.dialect)
        if plan is None:
            connection.execute(self.statement, many)
        else:
            self._run(connection, plan, True, [self._args(plan, params) for params in many])

    def _plan(self, dialect):
        try:
            return self._plans[dialect]
        except KeyError:
            pass
        compiled = self.statement.compile(dialect=dialect)
        binds = compiled.binds.values()
        if any(bind.expanding for bind in binds) or compiled.escaped_bind_names:
            plan = None
        else:
            processors = {
                bind.key: processor
                for bind in binds
                if (processor := bind.type.dialect_impl(dialect).bind_processor(dialect)) is not None
            }
            names = tuple(compiled.positiontup) if dialect.positional else None
            plan = (compiled.string, names, processors)
        self._plans[dialect] = plan
        return plan

    @staticmethod
    def _args(plan, params: dict):
        _, names, processors = plan
        if processors:
            params = {k: processors[k](v) if k in processors else v for k, v in params.items()}
        return params if names is None else tuple(params[name] for name in names)

    @staticmethod
    def _run(connection, plan, many: bool, args) -> list:
        sql = plan[0]
        dialect = connection.dialect
        if not connection.in_transaction():
            connection.begin()  # as execute() autobegins: the engine's begin events run (SQLite's turn, bsn/__init__)
        dbapi_connection = connection.connection
        cursor = dbapi_connection.cursor()
        try:
            events = connection.dispatch
            if events.before_cursor_execute:
                events.before_cursor_execute(connection, cursor, sql, args, None, many)
            if many:
                cursor.executemany(sql, args)
                rows = []
            else:
                cursor.execute(sql, args)
                rows = cursor.fetchall() if cursor.description is not None else []
            if events.after_cursor_execute:
                events.after_cursor_execute(connection, cursor, sql, args, None, many)
            return rows
        except dialect.loaded_dbapi.Error as error:
            lost = dialect.is_disconnect(error, dbapi_connection.dbapi_connection, cursor)
            if lost:
                # As execute() does: this connection is discarded, and the pool's others are not trusted either (a
                # restart closed them all); the ones in use go with their holders.
                connection.invalidate(error)
                connection.engine.dispose(close=False)
            raise DBAPIError.instance(
                sql,
                args,
                error,
                dialect.loaded_dbapi.Error,
                hide_parameters=True,
                connection_invalidated=lost,
                dialect=dialect,
                ismulti=many,
            ) from error
        finally:
            cursor.close()


class KeptConnection:
    """A connection of the engine that one task keeps between its transactions, instead of checking one out of the
    pool (and making an ORM session around it) for each.

    Why: for the small transaction of a lone chat send, the check-out and check-in and the session cost as much again
    as its statements on an idle process (0.5 of 1.1 ms, microbenchmark with 10 ms between sends). Its users make
    sure one transaction runs at a time (the send group commit: one storing task per process).

    - Left unused for PING_IDLE_AFTER, it goes back to the pool, and the next use checks one out: the pool's checks
      of a connection that sat idle (a PostgreSQL restart closes them) still come first.
    - A use that raises drops it: the next use checks out another.
    - A use while it is in use (a caller beside the storing task) gets a connection of its own.
    Whoever uses it ends each transaction (commit or rollback) before letting go.
    """

    def __init__(self, engine) -> None:
        self.engine = engine
        self._connection = None
        self._last_used = 0.0
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def use(self):
        if not self._lock.acquire(blocking=False):
            with self.engine.connect() as connection:
                yield connection
            return
        try:
            from bsn import KEPT_IDLE_SINCE, PING_IDLE_AFTER

            connection = self._connection
            if connection is not None and time.monotonic() - self._last_used >= PING_IDLE_AFTER:
                self._connection = None
                connection.info[KEPT_IDLE_SINCE] = self._last_used  # so the pool's check-out sees it idle that long
                connection.close()
                connection = None
            if connection is None:
                connection = self._connection = self.engine.connect()
            try:
                yield connection
            except BaseException:
                self._connection = None
                connection.close()
                raise
            finally:
                self._last_used = time.monotonic()
        finally:
            self._lock.release()

    def close(self) -> None:
        with self._lock:
            connection, self._connection = self._connection, None
            if connection is not None:
                connection.close()


def encode_cursor(*values) -> str:
    raw = json.dumps(values, separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, arity: int, kinds: tuple[type, ...] | None = None) -> list:
    """The values of a cursor made by encode_cursor; each must be of its kind (ints unless told)."""
    kinds = kinds or (int,) * arity
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, UnicodeDecodeError):
        raise ValidationError(fields={"cursor": ["Invalid cursor."]}) from None
    if (
        not isinstance(values, list)
        or len(values) != arity
        or not all(isinstance(v, k) and not isinstance(v, bool) for v, k in zip(values, kinds, strict=True))
    ):
        raise ValidationError(fields={"cursor": ["Invalid cursor."]})
    return values


def get_or_404(model, ident, what: str | None = None):
    row = db.session.get(model, ident)
    if row is None:
        raise NotFound(f"No such {what or model.__tablename__.rstrip('s').replace('_', ' ')}.")
    return row


def newest_first(stmt: Select, id_column, limit: int, before_id: int | None) -> tuple[list, bool]:
    """One page of `stmt`'s rows by descending id, after a cursor's id: (rows, whether more follow)."""
    if before_id is not None:
        stmt = stmt.where(id_column < before_id)
    rows = db.session.scalars(stmt.order_by(id_column.desc()).limit(limit + 1)).unique().all()
    return rows[:limit], len(rows) > limit


def cursor_id(args: dict) -> int | None:
    """The id a one-value cursor stands for, or None on the first page."""
    return decode_cursor(args["cursor"], 1)[0] if args.get("cursor") else None
