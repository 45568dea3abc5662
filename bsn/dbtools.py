"""Database helpers that differ by backend: row locks, upserts, cursors."""

from __future__ import annotations

import base64
import json

from sqlalchemy import Select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

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
