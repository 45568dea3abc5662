"""SQLite under gevent: a wait for another process's write lock that lets the rest of the process run.

SQLite's own busy wait (the `timeout` of `sqlite3.connect`) sleeps in C. Under gevent that freezes the
whole web process, every socket and request with it, for as long as another process (the RQ worker
flushing heartbeats, the release dyno migrating) holds the write lock. The connections of a gevent
process therefore give up at once on a busy database and retry here, sleeping through gevent between
tries, until the same deadline SQLite would have kept.
"""

from __future__ import annotations

import sqlite3
import time

# As long as SQLite itself would have waited (`timeout` in bsn/__init__.py's engine options).
BUSY_TIMEOUT = 30.0
FIRST_WAIT = 0.001
LONGEST_WAIT = 0.05


def _patiently(call, *args):
    deadline = None
    wait = FIRST_WAIT
    while True:
        try:
            return call(*args)
        except sqlite3.OperationalError as error:
            # Plain SQLITE_BUSY only: a failed statement changed nothing and may simply run again. The
            # extended codes (BUSY_SNAPSHOT: this transaction read a snapshot another has since overwritten)
            # never clear by waiting, and go up as they would have without this module.
            if getattr(error, "sqlite_errorcode", None) != sqlite3.SQLITE_BUSY:
                raise
            now = time.monotonic()
            if deadline is None:
                deadline = now + BUSY_TIMEOUT
            if now >= deadline:
                raise
            time.sleep(min(wait, deadline - now))  # gevent's sleep: the process is monkey-patched
            wait = min(wait * 2, LONGEST_WAIT)


class CooperativeCursor(sqlite3.Cursor):
    def execute(self, sql, parameters=()):
        return _patiently(super().execute, sql, parameters)

    def executemany(self, sql, seq_of_parameters):
        # A generator would be spent by a failed first try.
        return _patiently(super().executemany, sql, list(seq_of_parameters))


class CooperativeConnection(sqlite3.Connection):
    """Pass as `factory` to `sqlite3.connect`, with `timeout=0` so SQLite returns BUSY instead of waiting."""

    def cursor(self, factory=CooperativeCursor):
        return super().cursor(factory)

    def execute(self, sql, parameters=()):
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql, seq_of_parameters):
        return self.cursor().executemany(sql, seq_of_parameters)

    def commit(self):
        return _patiently(super().commit)


def connect_args(on_gevent: bool) -> dict:
    """`connect_args` for SQLAlchemy's pysqlite engine: cooperative lock waits on gevent, SQLite's own elsewhere."""
    if on_gevent:
        return {"timeout": 0, "factory": CooperativeConnection}
    return {"timeout": BUSY_TIMEOUT}
