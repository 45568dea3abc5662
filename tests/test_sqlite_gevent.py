"""SQLite lock waits under gevent: another process's write lock must not freeze the web process (bsn/sqlite.py)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap

import pytest

from bsn import sqlite


def _holder(path: str) -> sqlite3.Connection:
    """A connection holding the database's write lock, as another process's long transaction would."""
    holder = sqlite3.connect(path, timeout=0, isolation_level=None)
    holder.execute("PRAGMA journal_mode=WAL")
    holder.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
    holder.execute("BEGIN IMMEDIATE")
    return holder


def test_a_busy_write_waits_through_sleep_and_succeeds_once_the_lock_is_free(tmp_path, monkeypatch):
    path = str(tmp_path / "db.sqlite")
    holder = _holder(path)
    waits = []

    def sleep(seconds):  # what gevent patches: the wait happens here, not in C
        waits.append(seconds)
        if len(waits) == 3:
            holder.execute("COMMIT")

    monkeypatch.setattr(sqlite.time, "sleep", sleep)
    conn = sqlite3.connect(path, **sqlite.connect_args(on_gevent=True))
    conn.execute("INSERT INTO t VALUES (1)")
    conn.commit()
    assert len(waits) == 3
    assert waits == sorted(waits) and waits[-1] <= sqlite.LONGEST_WAIT
    assert holder.execute("SELECT count(*) FROM t").fetchone() == (1,)


def test_a_busy_write_gives_up_at_the_deadline(tmp_path, monkeypatch):
    path = str(tmp_path / "db.sqlite")
    holder = _holder(path)
    monkeypatch.setattr(sqlite, "BUSY_TIMEOUT", 0.05)
    conn = sqlite3.connect(path, **sqlite.connect_args(on_gevent=True))
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        conn.execute("INSERT INTO t VALUES (1)")
    holder.execute("COMMIT")
    assert holder.execute("SELECT count(*) FROM t").fetchone() == (0,)


def test_a_stale_snapshot_is_not_retried(tmp_path, monkeypatch):
    """A transaction that read before another committed can never write: waiting would only burn the deadline."""
    path = str(tmp_path / "db.sqlite")
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    other.execute("PRAGMA journal_mode=WAL")
    other.execute("CREATE TABLE t (x INTEGER)")
    conn = sqlite3.connect(path, **sqlite.connect_args(on_gevent=True))
    conn.execute("BEGIN")
    conn.execute("SELECT count(*) FROM t").fetchone()
    other.execute("INSERT INTO t VALUES (1)")
    monkeypatch.setattr(sqlite.time, "sleep", lambda s: pytest.fail("retried a stale snapshot"))
    with pytest.raises(sqlite3.OperationalError) as raised:
        conn.execute("INSERT INTO t VALUES (2)")
    assert raised.value.sqlite_errorcode != sqlite3.SQLITE_BUSY


def test_off_gevent_sqlite_waits_itself():
    assert sqlite.connect_args(on_gevent=False) == {"timeout": sqlite.BUSY_TIMEOUT}


def test_the_gevent_process_keeps_running_while_another_holds_the_write_lock(tmp_path):
    """End to end in a monkey-patched process: other greenlets run while a write waits for the lock."""
    script = textwrap.dedent(
        """
        from gevent import monkey
        monkey.patch_all()
        import sqlite3, sys, time
        import gevent
        from bsn import sqlite

        path = sys.argv[1]
        holder = sqlite3.connect(path, timeout=0, isolation_level=None)
        holder.execute("PRAGMA journal_mode=WAL")
        holder.execute("CREATE TABLE t (x INTEGER)")
        holder.execute("BEGIN IMMEDIATE")
        conn = sqlite3.connect(path, **sqlite.connect_args(on_gevent=True))
        ticks = [0]

        def ticker():
            while True:
                ticks[0] += 1
                gevent.sleep(0.002)

        def writer():
            conn.execute("INSERT INTO t VALUES (1)")
            conn.commit()

        gevent.spawn(ticker)
        write = gevent.spawn(writer)
        deadline = time.monotonic() + 10
        while ticks[0] < 50 and time.monotonic() < deadline:
            gevent.sleep(0.002)
        assert ticks[0] >= 50, "the loop froze"
        assert not write.ready(), "the write did not wait for the lock"
        holder.execute("COMMIT")
        write.join(timeout=10)
        assert write.successful(), write.exception
        print("ok", holder.execute("SELECT count(*) FROM t").fetchone()[0])
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "db.sqlite")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ok", "1"]
