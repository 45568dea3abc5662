"""Column helpers shared by the models."""

from __future__ import annotations

from datetime import UTC

from sqlalchemy import DateTime, Index, text
from sqlalchemy.types import TypeDecorator

from bsn.clock import now as utcnow

__all__ = ["UTCDateTime", "utcnow"]


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the zone, so it is put back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use timezone-aware UTC datetimes")
        return value.astimezone(UTC)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def client_id_index(table: str, owner: str) -> Index:
    """Unique (owner, client_id) where a client_id was sent: a retried create finds what the first one stored."""
    where = text("client_id IS NOT NULL")
    name = f"uq_{table}_{owner}_client_id"
    return Index(name, owner, "client_id", unique=True, sqlite_where=where, postgresql_where=where)
