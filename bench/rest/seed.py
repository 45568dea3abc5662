"""Seed hook of the shared REST benchmark: BENCH_DATA_DIR's CSVs into BSN's own schema at DATABASE_URL.

Run by the harness (servers.json: `.venv/bin/python bench/rest/seed.py {bench}`) from the repository root, with
DATABASE_URL (postgresql://... or sqlite:////abs/file.db) and BENCH_DATA_DIR. Steps on a first load:

1. wipe the database (only one whose name says "bench": this script must never empty a real one) and build
   the schema with our migrations (`flask db upgrade`), so the benchmark measures the schema production has;
2. load users, auth tokens (the SHA-256 of the data set's token column, as `accounts.issue_token` stores
   them), follows, posts (public, no media, `like_count` = the post's likes: a denormalised counter) and likes,
   keeping the ids: PostgreSQL by COPY with indexes and constraints rebuilt afterwards, SQLite by executemany
   in one transaction;
3. fix the sequences, ANALYZE (and FREEZE on PostgreSQL), and store the manifest's fingerprint in `bench_seed`
   next to a hash of our migrations and of this file: a change to either reloads.

When that is already there, it only removes what benchmark runs wrote (posts with id > counts.posts and the
likes and comments on them) and vacuums: about a second.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Loaded tables, in load order; pgload drops and rebuilds their indexes and constraints around the COPYs.
TABLES = ["users", "auth_tokens", "follows", "posts", "likes"]
# The data set has no time for follows and likes, which our schema requires: after every user and post.
FOLLOWED_AT = "2024-01-01T00:00:00Z"
LIKED_AT = "2025-01-01T00:00:00Z"
# Far beyond any run: a token that expired mid-benchmark would turn into 401s.
TOKEN_EXPIRES_AT = "2100-01-01T00:00:00Z"
# Never verified (nobody logs in with a password) and not an argon2 hash, so no password matches it.
DUMMY_PASSWORD_HASH = "!bench-seeded-no-password"


def harness_pgload(bench: str):
    """The harness's seed/pgload.py (fingerprint and COPY helpers), imported from its folder."""
    sys.path.insert(0, os.path.join(bench, "seed"))
    import pgload

    return pgload


def schema_hash() -> str:
    """Our migrations and this loader: when either changes, the loaded database no longer matches."""
    digest = hashlib.sha256()
    for path in [*sorted((REPO / "migrations" / "versions").glob("*.py")), Path(__file__)]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def migrate(url: str) -> None:
    env = dict(os.environ, DATABASE_URL=url, LOG_LEVEL="WARNING")
    # Nothing in a migration needs Redis; a closed port keeps it off any Redis that runs here.
    env["REDIS_URL"] = "redis://127.0.0.1:1/0"
    with tempfile.TemporaryDirectory(prefix="bsn-rest-seed-") as instance:
        env["BSN_INSTANCE_PATH"] = instance
        subprocess.run(
            [sys.executable, "-m", "flask", "--app", "bsn", "db", "upgrade"], cwd=REPO, env=env, check=True, timeout=300
        )


def token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


# -- PostgreSQL ---------------------------------------------------------------------------------------------------


def pg_meta(conn, pgload, key: str) -> str | None:
    if pgload.pg_get_fingerprint(conn) is None:
        return None
    row = conn.execute(f"SELECT value FROM {pgload.META_TABLE} WHERE key = %s", (key,)).fetchone()
    return row[0] if row else None


def pg_reset(conn, pgload, n_posts: int) -> None:
    """Undo earlier runs: their posts and every row that references one (likes, comments, tags... whatever the
    schema has by now, found through its foreign keys)."""
    referencing = conn.execute(
        "SELECT c.conrelid::regclass::text, a.attname FROM pg_constraint c"
        " JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]"
        " WHERE c.contype = 'f' AND c.confrelid = 'posts'::regclass AND c.conrelid <> c.confrelid ORDER BY 1"
    ).fetchall()
    deleted = {}
    for table, column in [*referencing, ("posts", "id")]:
        deleted[table] = conn.execute(f'DELETE FROM {table} WHERE "{column}" > %s', (n_posts,)).rowcount
    pgload.pg_reset_sequence(conn, "posts")
    touched = [table for table, n in deleted.items() if n]
    if touched:
        conn.execute(f"VACUUM (ANALYZE) {', '.join(touched)}")
    pgload.log(f"already loaded; removed rows of earlier runs: {deleted}")


def seed_pg(url: str, d: str, man: dict, pgload) -> None:
    import psycopg

    fp, schema, n_posts = man["fingerprint"], schema_hash(), man["counts"]["posts"]
    conninfo = pgload.pg_conninfo(url)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        if pgload.pg_get_fingerprint(conn) == fp and pg_meta(conn, pgload, "schema") == schema:
            pg_reset(conn, pgload, n_posts)
            return
        dbname = conn.info.dbname
        if "bench" not in dbname and os.environ.get("BSN_BENCH_SEED_FORCE") != "1":
            raise SystemExit(f"seed.py: refusing to wipe database {dbname!r} (no 'bench' in its name)")
        t0 = time.time()
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    migrate(url)
    pgload.log(f"schema by migrations in {time.time() - t0:.1f}s")
    t0 = time.time()
    with psycopg.connect(conninfo) as conn:  # one transaction: a failed load leaves no fingerprint
        with pgload.pg_deferred_constraints(conn, TABLES):
            pg_load(conn, d, pgload)
        for table in TABLES:
            pgload.pg_reset_sequence(conn, table)
        pgload.pg_set_fingerprint(conn, fp, {"schema": schema})
        conn.commit()
    t1 = time.time()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("VACUUM (FREEZE, ANALYZE)")
    pgload.log(f"loaded {man['counts']} in {t1 - t0:.1f}s, vacuumed in {time.time() - t1:.1f}s")


def pg_copy_with_defaults(conn, pgload, table: str, columns: list[str], path: str, defaults: dict) -> int:
    """COPY a CSV straight from the file, with the columns it lacks filled by temporary column defaults
    (much faster than rewriting a million rows in Python)."""
    for column, value in defaults.items():
        conn.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET DEFAULT {value}")
    n = pgload.pg_copy_csv(conn, table, columns, path)
    for column in defaults:
        conn.execute(f"ALTER TABLE {table} ALTER COLUMN {column} DROP DEFAULT")
    return n


def pg_load(conn, d: str, pgload) -> None:
    t = time.time()
    conn.execute(
        "CREATE TEMP TABLE users_in (id int, username text, token text, created_at timestamptz) ON COMMIT DROP"
    )
    pgload.pg_copy_csv(conn, "users_in", ["id", "username", "token", "created_at"], os.path.join(d, "users.csv"))
    conn.execute(
        "INSERT INTO users (id, username, email, password_hash, display_name, bio, role, created_at)"
        " SELECT id, username, username || '@bench.invalid', %s, '', '', 'user', created_at FROM users_in ORDER BY id",
        (DUMMY_PASSWORD_HASH,),
    )
    # Stored as accounts.issue_token stores a token: its SHA-256 only.
    conn.execute(
        "INSERT INTO auth_tokens (user_id, token_hash, created_at, expires_at)"
        " SELECT id, encode(sha256(convert_to(token, 'UTF8')), 'hex'), created_at, %s FROM users_in ORDER BY id",
        (TOKEN_EXPIRES_AT,),
    )
    pgload.log(f"users and tokens in {time.time() - t:.1f}s")
    t = time.time()
    n = pg_copy_with_defaults(
        conn, pgload, "follows", ["id", "follower_id", "followee_id"], os.path.join(d, "follows.csv"),
        {"created_at": f"'{FOLLOWED_AT}'"},
    )  # fmt: skip
    pgload.log(f"follows: {n} rows in {time.time() - t:.1f}s")
    t = time.time()
    n = pg_copy_with_defaults(
        conn, pgload, "likes", ["id", "user_id", "post_id"], os.path.join(d, "likes.csv"),
        {"created_at": f"'{LIKED_AT}'"},
    )  # fmt: skip
    pgload.log(f"likes: {n} rows in {time.time() - t:.1f}s")
    # Posts through a staging table, so like_count is right in the row as written (an UPDATE afterwards would
    # leave a dead copy of every post behind), in id order like a COPY.
    t = time.time()
    conn.execute(
        "CREATE TEMP TABLE posts_in (id bigint, author_id int, body text, created_at timestamptz) ON COMMIT DROP"
    )
    pgload.pg_copy_csv(conn, "posts_in", ["id", "author_id", "body", "created_at"], os.path.join(d, "posts.csv"))
    n = conn.execute(
        "INSERT INTO posts (id, author_id, body, visibility, media, like_count, comment_count, created_at)"
        " SELECT p.id, p.author_id, p.body, 'public', '[]', coalesce(c.n, 0), 0, p.created_at"
        " FROM posts_in p LEFT JOIN (SELECT post_id, count(*) AS n FROM likes GROUP BY post_id) c ON c.post_id = p.id"
        " ORDER BY p.id"
    ).rowcount
    pgload.log(f"posts: {n} rows in {time.time() - t:.1f}s")


# -- SQLite -------------------------------------------------------------------------------------------------------


def sqlite_meta(conn: sqlite3.Connection, pgload) -> tuple[str | None, str | None]:
    """(fingerprint, schema hash) of a loaded file, (None, None) for anything else, even a damaged file."""
    try:
        if pgload.sqlite_get_fingerprint(conn) is None:
            return None, None
        rows = dict(conn.execute(f"SELECT key, value FROM {pgload.META_TABLE}"))
    except sqlite3.DatabaseError:
        return None, None
    return rows.get("fingerprint"), rows.get("schema")


def sqlite_reset(conn: sqlite3.Connection, pgload, n_posts: int) -> None:
    """As pg_reset: the posts of earlier runs and every row whose foreign key points at one."""
    tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    referencing = [
        (table, fk[3])  # (id, seq, table, from, to, ...)
        for table in tables
        if table != "posts"
        for fk in conn.execute(f'PRAGMA foreign_key_list("{table}")')
        if fk[2] == "posts"
    ]
    deleted = {}
    with conn:
        for table, column in [*referencing, ("posts", "id")]:
            deleted[table] = conn.execute(f'DELETE FROM "{table}" WHERE "{column}" > ?', (n_posts,)).rowcount
    # Leave no WAL behind, so every run starts from the same file; the few freed pages are reused by the next
    # run's posts (a VACUUM would rewrite the whole file for nothing).
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    pgload.log(f"already loaded; removed rows of earlier runs: {deleted}")


def seed_sqlite(url: str, d: str, man: dict, pgload) -> None:
    path = pgload.sqlite_path(url)
    fp, schema, n_posts = man["fingerprint"], schema_hash(), man["counts"]["posts"]
    if os.path.exists(path):
        conn = sqlite3.connect(path)
        try:
            if sqlite_meta(conn, pgload) == (fp, schema):
                sqlite_reset(conn, pgload, n_posts)
                return
        finally:
            conn.close()
        if "bench" not in os.path.basename(path) and os.environ.get("BSN_BENCH_SEED_FORCE") != "1":
            raise SystemExit(f"seed.py: refusing to delete {path} (no 'bench' in its name)")
        for suffix in ("", "-wal", "-shm", "-journal"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    t0 = time.time()
    migrate(url)
    pgload.log(f"schema by migrations in {time.time() - t0:.1f}s")
    t0 = time.time()
    conn = sqlite3.connect(path)
    # The app runs in WAL mode; a bulk load is faster without journal (a failed one has no fingerprint and is
    # redone from scratch), and then WAL is switched on for the server.
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-262144")
    with conn:
        # Secondary indexes are built after the load, from sorted data: about a third faster than maintaining
        # them row by row (the UNIQUE constraints' own indexes cannot be dropped and stay).
        indexes = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            f" AND tbl_name IN ({', '.join('?' * len(TABLES))})",
            TABLES,
        ).fetchall()
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        sqlite_load(conn, d, pgload)
        t1 = time.time()
        for _, ddl in indexes:
            conn.execute(ddl)
        pgload.log(f"re-created {len(indexes)} indexes in {time.time() - t1:.1f}s")
        pgload.sqlite_set_fingerprint(conn, fp)
        conn.execute(f"INSERT INTO {pgload.META_TABLE} VALUES ('schema', ?)", (schema,))
    t1 = time.time()
    conn.execute("ANALYZE")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    pgload.log(f"loaded {man['counts']} into {path} in {t1 - t0:.1f}s, analyzed in {time.time() - t1:.1f}s")


def sqlite_load(conn: sqlite3.Connection, d: str, pgload) -> None:
    # SQLAlchemy's storage format for DateTime on SQLite: what the app's own cursors compare against.
    ts = lambda s: pgload.sqlite_ts(s, micro=True)  # noqa: E731
    csv = lambda name: pgload.read_csv(os.path.join(d, name))  # noqa: E731
    # Ids go in as the CSV's text: INTEGER affinity stores them as integers, and a million int() calls cost more
    # than the inserts.
    t = time.time()
    users = list(csv("users.csv"))
    conn.executemany(
        "INSERT INTO users (id, username, email, password_hash, display_name, bio, role, created_at)"
        " VALUES (?, ?, ?, ?, '', '', 'user', ?)",
        ((u[0], u[1], f"{u[1]}@bench.invalid", DUMMY_PASSWORD_HASH, ts(u[3])) for u in users),
    )
    expires = ts(TOKEN_EXPIRES_AT)
    conn.executemany(
        "INSERT INTO auth_tokens (user_id, token_hash, created_at, expires_at) VALUES (?, ?, ?, ?)",
        ((u[0], token_hash(u[2]), ts(u[3]), expires) for u in users),
    )
    pgload.log(f"users and tokens in {time.time() - t:.1f}s")
    t = time.time()
    followed = ts(FOLLOWED_AT)
    conn.executemany(
        "INSERT INTO follows (id, follower_id, followee_id, created_at) VALUES (?, ?, ?, ?)",
        ((f[0], f[1], f[2], followed) for f in csv("follows.csv")),
    )
    pgload.log(f"follows in {time.time() - t:.1f}s")
    t = time.time()
    likes_per_post: Counter[str] = Counter()
    liked = ts(LIKED_AT)

    def likes():
        for like_id, user_id, post_id in csv("likes.csv"):
            likes_per_post[post_id] += 1
            yield like_id, user_id, post_id, liked

    conn.executemany("INSERT INTO likes (id, user_id, post_id, created_at) VALUES (?, ?, ?, ?)", likes())
    pgload.log(f"likes in {time.time() - t:.1f}s")
    t = time.time()
    conn.executemany(
        "INSERT INTO posts (id, author_id, body, visibility, media, like_count, comment_count, created_at)"
        " VALUES (?, ?, ?, 'public', '[]', ?, 0, ?)",
        ((p[0], p[1], p[2], likes_per_post[p[0]], ts(p[3])) for p in csv("posts.csv")),
    )
    pgload.log(f"posts in {time.time() - t:.1f}s")


def main() -> int:
    if len(sys.argv) != 2:
        raise SystemExit("usage: seed.py HARNESS_DIR   (with DATABASE_URL and BENCH_DATA_DIR set)")
    pgload = harness_pgload(sys.argv[1])
    url = os.environ.get("DATABASE_URL") or sys.exit("seed.py: DATABASE_URL is not set")
    d = pgload.data_dir()
    man = pgload.manifest(d)
    if pgload.db_kind(url) == "postgresql":
        seed_pg(url, d, man, pgload)
    else:
        seed_sqlite(url, d, man, pgload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
