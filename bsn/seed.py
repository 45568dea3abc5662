"""`flask bsn seed`: fill a database with realistic volume fast (bulk inserts; COPY on PostgreSQL)."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, text

from bsn.extensions import db
from bsn.models import Follow, Post, PostLike, User

# Not a usable hash: seeded accounts cannot log in until they reset their password.
UNUSABLE_PASSWORD = "!seeded"
START = datetime(2025, 1, 1, tzinfo=UTC)


def _skewed(rng: random.Random, n: int) -> int:
    """An id in 1..n where low ids are much more popular (a Zipf-like choice, as followers and posters are)."""
    return min(n, int(n ** rng.random()))


def seed(users: int, posts: int, follows: int, likes: int, seed_value: int = 7, echo=print) -> dict:
    if db.session.scalar(select(func.count()).select_from(User)):
        raise RuntimeError("the database already has users: seed an empty one")
    rng = random.Random(seed_value)
    started = time.monotonic()
    timings = {}

    def load(model, columns, rows):
        t0 = time.monotonic()
        _bulk(model.__table__.name, columns, rows)
        timings[model.__tablename__] = round(time.monotonic() - t0, 2)
        echo(f"  {model.__tablename__}: {timings[model.__tablename__]} s")

    now = START.isoformat()
    load(
        User,
        ["id", "username", "email", "password_hash", "display_name", "bio", "role", "created_at"],
        (
            (i, f"user{i}", f"user{i}@example.com", UNUSABLE_PASSWORD, f"User {i}", "", "user", now)
            for i in range(1, users + 1)
        ),
    )
    pairs = set()
    while len(pairs) < follows:
        follower, followee = rng.randint(1, users), _skewed(rng, users)
        if follower != followee:
            pairs.add((follower, followee))
    load(Follow, ["follower_id", "followee_id", "created_at"], ((a, b, now) for a, b in sorted(pairs)))
    like_pairs = set()
    while len(like_pairs) < likes:
        like_pairs.add((rng.randint(1, users), _skewed(rng, posts)))
    like_counts: dict[int, int] = {}
    for _, post_id in like_pairs:
        like_counts[post_id] = like_counts.get(post_id, 0) + 1
    step = timedelta(days=365) / max(posts, 1)
    load(
        Post,
        ["id", "author_id", "body", "visibility", "media", "like_count", "comment_count", "created_at"],
        (
            (
                i,
                _skewed(rng, users),
                f"post {i}: hello #seed",
                "public",
                "[]",
                like_counts.get(i, 0),
                0,
                (START + step * i).isoformat(),
            )
            for i in range(1, posts + 1)
        ),
    )
    load(PostLike, ["user_id", "post_id", "created_at"], ((u, p, now) for u, p in sorted(like_pairs)))
    _fix_sequences()
    return {"seconds": round(time.monotonic() - started, 1), **timings}


def _bulk(table: str, columns: list[str], rows) -> None:
    connection = db.session.connection()
    if connection.dialect.name == "postgresql":
        raw = connection.connection.driver_connection
        with raw.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    else:
        placeholders = ", ".join(f":{c}" for c in columns)
        statement = text(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders})")
        batch = []
        for row in rows:
            batch.append(dict(zip(columns, row, strict=True)))
            if len(batch) == 20_000:
                connection.execute(statement, batch)
                batch = []
        if batch:
            connection.execute(statement, batch)
    db.session.commit()


def _fix_sequences() -> None:
    """Ids were given explicitly: move PostgreSQL's sequences past them."""
    connection = db.session.connection()
    if connection.dialect.name != "postgresql":
        return
    for table in ("users", "follows", "posts", "likes"):
        connection.execute(
            text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT COALESCE(MAX(id), 1) FROM {table}))")
        )
    db.session.commit()
    connection = db.session.connection()
    connection.execute(text("ANALYZE"))
    db.session.commit()
