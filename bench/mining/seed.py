"""Fast seeding for the mining benchmarks: rows written in bulk inside the app context, no HTTP and no argon2."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable
from datetime import datetime, timedelta

from flask import Flask, current_app
from sqlalchemy import insert, select, text

from bsn import create_app
from bsn.actors import Caller
from bsn.clock import now
from bsn.config import normalize_database_url
from bsn.extensions import db, redis_store
from bsn.models import Achievement, AuthToken, MiningSession, MiningState, User
from bsn.services import accounts, heartbeats, mining

# Never verified: no request of the benchmarks logs in, and a real argon2 hash per user would cost minutes.
DUMMY_HASH = "!bench-seeded-no-password"


def make_app(database_url: str, redis_url: str, **settings) -> Flask:
    """The app the benchmark process itself uses to seed and to check, on the benchmark's database and Redis."""
    return create_app(
        {
            "SQLALCHEMY_DATABASE_URI": normalize_database_url(database_url),
            "REDIS_URL": redis_url,
            "LOG_LEVEL": "WARNING",
            **settings,
        }
    )


def is_postgresql() -> bool:
    return db.engine.dialect.name == "postgresql"


def user_row(i: int, at) -> dict:
    return {
        "id": i,
        "username": f"m{i:07d}",
        "email": f"m{i:07d}@example.com",
        "password_hash": DUMMY_HASH,
        "display_name": "",
        "bio": "",
        "avatar_url": None,
        "role": "user",
        "suspended_at": None,
        "created_at": at,
    }


def insert_users(count: int) -> list[int]:
    """`count` users with ids 1..count, by one executemany of SQLAlchemy Core; returns their ids."""
    at = now()
    db.session.execute(insert(User.__table__), [user_row(i, at) for i in range(1, count + 1)])
    reset_sequence("users")
    db.session.commit()
    return list(range(1, count + 1))


def reset_sequence(table: str) -> None:
    """Explicit ids leave PostgreSQL's sequence behind: move it past them, so later inserts do not collide."""
    if is_postgresql():
        # `table` is one of the benchmark's own constants, never input.
        sql = f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
        db.session.execute(text(sql))


def insert_tokens(user_ids: Iterable[int]) -> list[str]:
    """One bearer token per user, stored as issue_token stores it (the SHA-256 only); returns the raw tokens."""
    at = now()
    expires = at + timedelta(seconds=current_app.config["AUTH_TOKEN_TTL"])
    raws, rows = [], []
    for user_id in user_ids:
        raw = secrets.token_urlsafe(32)
        raws.append(raw)
        # accounts._digest is how issue_token hashes: the same function, so the server finds these tokens.
        rows.append({"user_id": user_id, "token_hash": accounts._digest(raw), "created_at": at, "expires_at": expires})
    db.session.execute(insert(AuthToken.__table__), rows)
    db.session.commit()
    return raws


def start_sessions(user_ids: list[int]) -> None:
    """A live session per user, as mining.start leaves it, written in bulk.

    mining.start costs 6-10 ms a call (a locked read-modify-write and a commit each): 10,000 of them
    would take minutes. So the first user goes through mining.start itself, the others get the same rows
    built with the service's own rules and inserted at once, and `check_like_start` compares them.
    """
    mining.start(Caller(user_ids[0]))
    at = now()
    heartbeat_timeout, _, _ = mining._settings()
    # A first session: streak 1, and the first_session achievement, whose bonus counts at once.
    earned = {a.code for a in mining.ACHIEVEMENTS if a.measure == "sessions_count" and a.threshold <= 1}
    power = mining.power_for(1, earned)
    sessions = []
    for user_id in user_ids[1:]:
        session = MiningSession(
            user_id=user_id, power=power, started_at=at, last_heartbeat=at, last_activity_at=at,
            heartbeat_deadline=at + heartbeat_timeout, credited=0, settled=False,
        )  # fmt: skip
        mining._set_hard_deadline(session)
        sessions.append(session)
    db.session.add_all(sessions)
    db.session.flush()  # one batched INSERT ... RETURNING: the ids the states point at
    db.session.execute(
        insert(MiningState.__table__),
        [
            {"user_id": s.user_id, "session_id": s.id, "pending": 0, "total_mined": 0, "streak_days": 1,
             "last_session_day": at.date(), "sessions_count": 1, "last_inactive_check": at, "created_at": at}
            for s in sessions
        ],
    )  # fmt: skip
    db.session.execute(
        insert(Achievement.__table__),
        [{"user_id": s.user_id, "code": code, "earned_at": at} for s in sessions for code in sorted(earned)],
    )
    # Redis's live copy, which the heartbeat's fast path renews. Before the commit, unlike mining.start, only
    # because a commit expires the objects and reloading them would cost a query each; nobody reads meanwhile.
    for session in sessions:
        heartbeats.seed(session)
    db.session.commit()
    check_like_start(user_ids[0], user_ids[1])


def _snapshot(user_id: int) -> dict:
    """A user's mining rows without keys, instants as offsets from the session's start."""
    state = db.session.scalar(select(MiningState).where(MiningState.user_id == user_id))
    session = state.session
    origin = session.started_at

    def plain(row, skip):
        values = {}
        for column in row.__table__.columns:
            if column.key in skip:
                continue
            value = getattr(row, column.key)
            values[column.key] = value - origin if isinstance(value, datetime) else value
        return values

    codes = sorted(db.session.scalars(select(Achievement.code).where(Achievement.user_id == user_id)))
    live = redis_store.client.hgetall(heartbeats.LIVE_PREFIX + str(user_id))
    origin_us = heartbeats.to_us(origin)
    return {
        # created_at: mining.start reads the clock once more for it, a few microseconds later.
        "state": plain(state, {"user_id", "session_id", "created_at"}),
        "session": plain(session, {"id", "user_id"}),
        "achievements": codes,
        "redis": {k.decode(): int(float(v)) - origin_us for k, v in live.items() if k != b"sid"},
    }


def check_like_start(started: int, bulk: int) -> None:
    """Refuse to benchmark sessions that mining.start would not have written."""
    db.session.expire_all()
    want, got = _snapshot(started), _snapshot(bulk)
    db.session.rollback()
    if want != got:
        raise RuntimeError(f"bulk-seeded mining rows differ from mining.start's:\n start: {want}\n bulk:  {got}")


def warm_token_cache(raw_tokens: Iterable[str]) -> None:
    """What a user's first authenticated call does: the token cache then answers the heartbeat's fast path."""
    for raw in raw_tokens:
        if accounts.user_id_for_token(raw) is None:
            raise RuntimeError("a seeded token does not authenticate")


def seed_miners(count: int) -> tuple[list[int], list[str], dict[str, float]]:
    """Users, tokens and live sessions; returns user ids, raw tokens and the seconds each step took."""
    timings = {}
    started = time.perf_counter()
    user_ids = insert_users(count)
    timings["users"] = time.perf_counter() - started

    started = time.perf_counter()
    raws = insert_tokens(user_ids)
    timings["tokens"] = time.perf_counter() - started

    started = time.perf_counter()
    start_sessions(user_ids)
    timings["sessions"] = time.perf_counter() - started

    started = time.perf_counter()
    warm_token_cache(raws)
    timings["token cache"] = time.perf_counter() - started
    return user_ids, raws, timings
