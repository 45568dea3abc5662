"""Sweep benchmark: mining.sweep() over a million open sessions, a few percent of them lapsed, on one database."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, timedelta

from sqlalchemy import bindparam, event, func, select, update

from bench.common import RESULTS, database, git_revision, migrate, save_report
from bench.mining import seed
from bsn.devredis import PrivateRedis
from bsn.extensions import db
from bsn.models import MiningSession, User
from bsn.services import heartbeats, mining

TARGET_S = 2.0
INDEX = "ix_mining_sessions_open_expires_at"
SESSIONS = MiningSession.__table__
USER_COLUMNS = ("id", "username", "email", "password_hash", "display_name", "bio", "role", "created_at")
SESSION_COLUMNS = tuple(c.key for c in SESSIONS.columns)
# Columns whose value depends on whether the session has lapsed; a change of level rewrites only these.
LAPSE_COLUMNS = ("last_heartbeat", "heartbeat_deadline", "expires_at")


# -- the rows -----------------------------------------------------------------------------------------------------


class Sessions:
    """The benchmark's sessions as pure functions of their id and of the sweep's fixed instant T0.

    Every row follows the accrual rule (deadlines as mining.start and the heartbeat set them): a live one
    was renewed within HEARTBEAT_TIMEOUT of T0, a lapsed one missed its heartbeat deadline before T0. The
    sweep runs at T0 (`mining.sweep(at=T0)`), so however long the benchmark takes, the same rows lapse.
    Deadlines are scattered by multiplicative hashes of the id, so the index's order is not the table's.
    """

    def __init__(self, rows: int, t0: datetime.datetime) -> None:
        self.rows, self.t0 = rows, t0
        self.heartbeat, self.activity, cap = (int(d.total_seconds()) for d in mining._settings())
        self.half = self.activity // 2
        # Rows started within ACTIVITY_TIMEOUT of T0, so their hard deadline is after T0; they must fit.
        if self.heartbeat + 11 > self.half or cap < self.activity:
            raise RuntimeError("the benchmark's rows need HEARTBEAT_TIMEOUT < ACTIVITY_TIMEOUT / 2 <= MAX_SESSION / 2")
        self.hard_reason = mining.INACTIVE if self.activity < cap else mining.MAX_SESSION
        self.power = mining.power_for(1, {"first_session"})

    def values(self, i: int, lapsed: bool) -> dict:
        t0, second = self.t0, timedelta(seconds=1)
        started = t0 - (self.half + (i * 7919) % self.half) * second  # in (T0 - ACTIVITY_TIMEOUT, T0 - half]
        hard = started + self.activity * second  # after T0: only the heartbeat ends these sessions
        if lapsed:
            beat = t0 - (self.heartbeat + 1 + (i * 104729) % (self.half - self.heartbeat - 1)) * second
        else:
            beat = t0 - (1 + (i * 104729) % (self.heartbeat - 10)) * second
        beat_deadline = beat + self.heartbeat * second
        return {
            "id": i, "user_id": i, "power": self.power, "started_at": started, "last_heartbeat": beat,
            "last_activity_at": started, "heartbeat_deadline": beat_deadline, "hard_deadline": hard,
            "hard_reason": self.hard_reason, "expires_at": min(beat_deadline, hard), "ended_at": None,
            "end_reason": None, "credited": 0, "settled": False,
        }  # fmt: skip


def lapsed_ids(rows: int, step: int) -> set[int]:
    return set(range(step, rows + 1, step))


def step_for(percent: float) -> int:
    """Lapsed rows are every step-th id: spread over the whole table, as sessions lapse at random."""
    return max(1, round(100 / percent))


# -- bulk loading -------------------------------------------------------------------------------------------------


def load(table, columns: tuple[str, ...], rows: Iterable[tuple]) -> None:
    """Rows into a table inside the session's transaction: COPY on PostgreSQL, one executemany on SQLite."""
    raw = db.session.connection().connection.driver_connection
    names = ", ".join(columns)
    if seed.is_postgresql():
        with raw.cursor() as cursor, cursor.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    # SQLite stores what SQLAlchemy's types write (datetimes as text): convert as they would, once per value.
    dialect = db.engine.dialect
    converters = []
    for name in columns:
        processor = table.c[name].type.bind_processor(dialect)
        converters.append(_memo(processor) if processor else None)
    marks = ", ".join("?" for _ in columns)
    cursor = raw.cursor()
    try:
        cursor.executemany(
            f"INSERT INTO {table.name} ({names}) VALUES ({marks})",
            (tuple(v if c is None else c(v) for c, v in zip(converters, row, strict=True)) for row in rows),
        )
    finally:
        cursor.close()


def _memo(convert: Callable) -> Callable:
    """Few distinct instants recur a million times: convert each once."""
    cache: dict = {}

    def converted(value):
        try:
            return cache[value]
        except KeyError:
            cache[value] = result = convert(value)
            return result
        except TypeError:  # unhashable: not one of ours, convert it every time
            return convert(value)

    return converted


def user_rows(rows: int, at: datetime.datetime) -> Iterator[tuple]:
    for i in range(1, rows + 1):
        name = f"m{i:07d}"
        yield (i, name, f"{name}@example.com", seed.DUMMY_HASH, "", "", "user", at)


def session_rows(sessions: Sessions, step: int) -> Iterator[tuple]:
    for i in range(1, sessions.rows + 1):
        values = sessions.values(i, i % step == 0)
        yield tuple(values[c] for c in SESSION_COLUMNS)


def maintain(table: str | None = "mining_sessions") -> float:
    """VACUUM ANALYZE (PostgreSQL) / ANALYZE (SQLite) of a table, or of the whole database; seconds taken.

    After every reset too: each sweep and reset leaves dead row versions and index entries on PostgreSQL
    (ended_at is in the partial index's predicate, so no update is HOT), which autovacuum would remove in
    production; vacuuming keeps every timed run on the same clean table.
    """
    started = time.perf_counter()
    db.session.commit()
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        command = "VACUUM ANALYZE" if seed.is_postgresql() else "ANALYZE"
        conn.exec_driver_sql(f"{command} {table}" if table else command)
    return time.perf_counter() - started


def size_note() -> str:
    if seed.is_postgresql():
        table, index = db.session.execute(
            select(func.pg_total_relation_size("mining_sessions"), func.pg_relation_size(INDEX))
        ).one()
        return f"mining_sessions {table / 2**20:.0f} MiB with its indexes; {INDEX} {index / 2**20:.1f} MiB"
    path = db.engine.url.database
    return f"SQLite file {os.path.getsize(path) / 2**20:.0f} MiB"


# -- resets -------------------------------------------------------------------------------------------------------


def reopen_ended() -> int:
    """Undo a sweep: the sessions it ended are open again with the same deadlines, so they lapse again."""
    count = db.session.execute(
        update(MiningSession)
        .where(MiningSession.ended_at.is_not(None))
        .values(ended_at=None, end_reason=None)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    return count


def change_level(sessions: Sessions, old_step: int, new_step: int) -> None:
    """Make every new_step-th session the lapsed ones, rewriting only the rows that change side."""
    old, new = lapsed_ids(sessions.rows, old_step), lapsed_ids(sessions.rows, new_step)
    params = []
    for i in sorted(old ^ new):
        values = sessions.values(i, i in new)
        params.append({"b_id": i, **{f"b_{c}": values[c] for c in LAPSE_COLUMNS}})
    if params:
        statement = (
            update(SESSIONS)
            .where(SESSIONS.c.id == bindparam("b_id"))
            .values({c: bindparam(f"b_{c}") for c in LAPSE_COLUMNS})
        )
        db.session.execute(statement, params)
    db.session.commit()


# -- timing -------------------------------------------------------------------------------------------------------


@dataclass
class Run:
    seconds: float  # mining.sweep() alone: what the periodic sweep job waits for
    ended: int
    parts: dict[str, float] = field(default_factory=dict)
    announce: float = 0.0  # mining.announce_stopped of the ended sessions: separate jobs, not in `seconds`

    @property
    def rest(self) -> float:
        """Commit, logging and the call itself: what the timed parts leave."""
        return self.seconds - sum(self.parts.values())


@contextlib.contextmanager
def parts_timed():
    """Time sweep()'s steps by wrapping the functions it calls, restored afterwards; each costs < 1 us a call."""
    parts: dict[str, float] = defaultdict(float)
    originals = (heartbeats.flush, mining.end_lapsed)

    def timed(name, function):
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                parts[name] += time.perf_counter() - started

        return wrapper

    heartbeats.flush = timed("flush", originals[0])
    mining.end_lapsed = timed("update", originals[1])
    try:
        yield parts
    finally:
        heartbeats.flush, mining.end_lapsed = originals


def timed_sweep(at: datetime.datetime, expected: int) -> Run:
    db.session.remove()  # a fresh session, as the worker's job gets
    with parts_timed() as parts:
        started = time.perf_counter()
        ended = mining.sweep(at)
        seconds = time.perf_counter() - started
    if len(ended) != expected:
        raise RuntimeError(f"the sweep ended {len(ended)} sessions, {expected} were lapsed")
    # The notices go out from separate jobs (workers.mining.announce_stopped); timed apart, all in one here.
    started = time.perf_counter()
    mining.announce_stopped(ended)
    announce = time.perf_counter() - started
    run = Run(seconds, len(ended), dict(parts), announce)
    print(
        f"  sweep ended {run.ended:,} in {seconds:.3f} s (flush {run.parts.get('flush', 0):.3f}, "
        f"UPDATE {run.parts.get('update', 0):.3f}, rest {run.rest:.3f}); announce_stopped {announce:.3f} s",
        file=sys.stderr,
    )
    return run


@contextlib.contextmanager
def captured_update():
    """The sweep's UPDATE as the driver receives it (SQL and parameters), for EXPLAIN."""
    seen: list = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("UPDATE MINING_SESSIONS SET ENDED_AT"):
            seen.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", capture)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", capture)


def explain(statement: str, parameters, analyze: bool = False) -> str:
    """The plan of the sweep's UPDATE; with `analyze` (PostgreSQL) it runs, inside a transaction rolled back."""
    if seed.is_postgresql():
        prefix = "EXPLAIN (ANALYZE, BUFFERS) " if analyze else "EXPLAIN "
    else:
        prefix = "EXPLAIN QUERY PLAN "
    with db.engine.connect() as conn:
        rows = conn.exec_driver_sql(prefix + statement, parameters).all()
        conn.rollback()
    if seed.is_postgresql():
        return "\n".join(row[0] for row in rows)
    return "\n".join(str(row[-1]) for row in rows)


# -- the benchmark ------------------------------------------------------------------------------------------------


def median(runs: list[Run]) -> Run:
    return sorted(runs, key=lambda r: r.seconds)[(len(runs) - 1) // 2]


def parts_cells(run: Run) -> str:
    p = run.parts
    return f"{p.get('flush', 0):.3f} | {p.get('update', 0):.3f} | {run.rest:.3f} | {run.announce:.3f}"


def report(args: argparse.Namespace, db_kind: str, info: dict) -> str:
    rows, main_step = args.rows, step_for(args.lapsed)
    main_count = rows // main_step
    repeats: list[Run] = info["levels"][main_step]
    lines = [
        f"# Mining sweep benchmark, {db_kind}, {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
        "",
        f"- revision: {git_revision()}",
        f"- host: {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        f"- table: {rows:,} users and {rows:,} open mining sessions (one each), lapsed ones every n-th id; "
        f"{info['size']}",
        f"- load: users {info['load_users']:.1f} s, sessions {info['load_sessions']:.1f} s, "
        f"{'VACUUM ANALYZE' if db_kind == 'postgresql' else 'ANALYZE'} {info['analyze']:.1f} s",
        "- timed: `mining.sweep(at=T0)` in the benchmark process (a private Redis; no buffered heartbeats to flush), "
        "T0 fixed so the same rows lapse however long the run takes; between runs the ended sessions are reopened "
        f"with the same deadlines, then {'VACUUM ANALYZE' if db_kind == 'postgresql' else 'ANALYZE'} (not timed)",
        "- parts: flush = heartbeats.flush(); UPDATE = end_lapsed (the set-based UPDATE ... RETURNING, and fetching "
        "its rows); commit+rest = the commit and the remainder. announce = mining.announce_stopped of the ended "
        "sessions (one realtime mining_stopped event each, a Redis PUBLISH), which the sweep job leaves to separate "
        "jobs: timed after the sweep, not part of its time",
        "",
        f"## {args.lapsed:g}% lapsed: {main_count:,} of {rows:,} sessions",
        "",
        "| run | sweep() s | ended | flush s | UPDATE s | commit+rest s | announce s (apart) |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| first | {info['first'].seconds:.3f} | {info['first'].ended:,} | {parts_cells(info['first'])} |",
    ]
    for n, run in enumerate(repeats, 1):
        lines.append(f"| repeat {n} | {run.seconds:.3f} | {run.ended:,} | {parts_cells(run)} |")
    main_secs = secs_of(repeats)
    main_median = statistics.median(main_secs)
    lines += [
        "",
        f"Repeats: min {min(main_secs):.3f} s, median {main_median:.3f} s; first run {info['first'].seconds:.3f} s.",
        "",
        "## Growth with lapsed rows (same table)",
        "",
        "| lapsed | share | min s | median s | max s | us per lapsed row | median: flush / UPDATE / commit+rest / "
        "announce (apart) s |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]
    for step, runs in sorted(info["levels"].items(), reverse=True):
        count = rows // step
        secs = secs_of(runs)
        mid = median(runs)
        lines.append(
            f"| {count:,} | {100 * count / rows:g}% | {min(secs):.3f} | {statistics.median(secs):.3f} | "
            f"{max(secs):.3f} | {1e6 * statistics.median(secs) / max(count, 1):.1f} | "
            f"{parts_cells(mid).replace(' | ', ' / ')} |"
        )
    lines += ["", "## Plan of the sweep's UPDATE", ""]
    uses = INDEX in info["plan"]
    lines += ["```", info["plan"], "```", "", f"Uses the partial index {INDEX}: {'yes' if uses else 'NO'}"]
    if info.get("plan_analyze"):
        lines += ["", "EXPLAIN (ANALYZE, BUFFERS), rolled back:", "", "```", info["plan_analyze"], "```"]
    verdict = "PASS" if main_median < TARGET_S and uses else "FAIL"
    lines += [
        "",
        f"sweep of {rows:,} sessions with {main_count:,} lapsed: median {main_median:.3f} s "
        f"(target < {TARGET_S:g} s, on the partial index): {verdict}",
    ]
    return "\n".join(lines) + "\n"


def secs_of(runs: list[Run]) -> list[float]:
    return [r.seconds for r in runs]


def main(args: argparse.Namespace, db_kind: str) -> str:
    """One sweep benchmark on one database; returns the report (also written under bench/results/mining)."""
    info: dict = {"levels": {}}
    main_step = step_for(args.lapsed)
    steps = sorted({step_for(p) for p in args.levels} | {main_step}, reverse=True)  # fewest lapsed first
    with contextlib.ExitStack() as cleanup:
        workdir = tempfile.mkdtemp(prefix="bsn-bench-mining-sweep-")
        cleanup.callback(shutil.rmtree, workdir, ignore_errors=True)

        redis = PrivateRedis(os.path.join(workdir, "redis"), persist=False)
        cleanup.callback(redis.stop)
        redis.start()
        database_url = cleanup.enter_context(database(db_kind, workdir, prefix="bsn_bench_mining_"))

        instance = os.path.join(workdir, "instance")
        env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis.url, "BSN_INSTANCE_PATH": instance}
        print(f"migrating the {db_kind} database ...", file=sys.stderr)
        migrate(env)
        os.environ["BSN_INSTANCE_PATH"] = instance
        app = seed.make_app(database_url, redis.url)
        cleanup.enter_context(app.app_context())
        cleanup.callback(db.engine.dispose)  # before the database is dropped: no connection keeps it busy

        t0 = datetime.datetime.now(UTC).replace(microsecond=0)
        sessions = Sessions(args.rows, t0)
        print(f"loading {args.rows:,} users ...", file=sys.stderr)
        started = time.perf_counter()
        load(User.__table__, USER_COLUMNS, user_rows(args.rows, t0))
        db.session.commit()
        info["load_users"] = time.perf_counter() - started
        print(f"  {info['load_users']:.1f} s; loading {args.rows:,} mining sessions ...", file=sys.stderr)
        started = time.perf_counter()
        load(SESSIONS, SESSION_COLUMNS, session_rows(sessions, main_step))
        seed.reset_sequence("users")
        seed.reset_sequence("mining_sessions")
        db.session.commit()
        info["load_sessions"] = time.perf_counter() - started
        print(f"  {info['load_sessions']:.1f} s; analyzing ...", file=sys.stderr)
        info["analyze"] = maintain(None)  # the whole database, users too
        info["size"] = size_note()
        db.session.commit()

        print(f"first sweep, {args.rows // main_step:,} lapsed ...", file=sys.stderr)
        with captured_update() as seen:
            info["first"] = timed_sweep(t0, args.rows // main_step)
        if not seen:
            raise RuntimeError("the sweep ran no UPDATE of mining_sessions that the benchmark recognises")
        statement, parameters = seen[0]

        current = main_step
        for step in steps:
            count = args.rows // step
            print(f"{count:,} lapsed ({100 * count / args.rows:g}%): {args.repeats} sweeps ...", file=sys.stderr)
            reopen_ended()
            change_level(sessions, current, step)
            current = step
            maintain()
            if step == main_step:
                # Here the lapsed rows are open again, as the sweep finds them.
                info["plan"] = explain(statement, parameters)
                if seed.is_postgresql():
                    info["plan_analyze"] = explain(statement, parameters, analyze=True)
                    maintain()
            runs = []
            for repeat in range(args.repeats):
                if repeat:
                    reopen_ended()
                    maintain()
                runs.append(timed_sweep(t0, count))
            info["levels"][step] = runs
        text = report(args, db_kind, info)

    save_report(text, RESULTS / "mining", f"sweep-{db_kind}")
    return text
