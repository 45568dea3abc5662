"""Token hook of the shared REST benchmark: prints the bearer tokens of users 1..N, one per line, nothing else.

`seed.py` stored the data set's own tokens (users.csv's token column) the way `accounts.issue_token` stores a
token, as its SHA-256 with a far expiry, so this hook only reads them back from BENCH_DATA_DIR and checks, in one
query, that DATABASE_URL holds every one of them live for the right user; otherwise the server would answer
401s that look like a slow server instead of a wrong seed.
"""

from __future__ import annotations

import csv
import hashlib
import os
import sqlite3
import sys
from datetime import UTC, datetime
from urllib.parse import urlparse


def data_set_tokens(n: int) -> list[str]:
    with open(os.path.join(os.environ["BENCH_DATA_DIR"], "users.csv"), newline="", encoding="utf-8") as f:
        rows = csv.reader(f)
        next(rows)
        tokens = {int(row[0]): row[2] for row in rows}
    return [tokens[k] for k in range(1, n + 1) if k in tokens]


def live_tokens(url: str) -> dict[str, int]:
    """token_hash -> user_id of every token that is neither revoked nor expired."""
    sql = "SELECT token_hash, user_id FROM auth_tokens WHERE revoked_at IS NULL AND expires_at > {}"
    if url.startswith("sqlite:"):
        # SQLAlchemy's text format for DateTime on SQLite, which compares as text.
        at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        with sqlite3.connect(url.split("sqlite:///", 1)[1]) as conn:
            return dict(conn.execute(sql.format("?"), (at,)))
    import psycopg

    u = urlparse(url)
    with psycopg.connect(f"postgresql://{u.netloc}{u.path}") as conn:
        return dict(conn.execute(sql.format("now()")).fetchall())


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: tokens.py N   (with DATABASE_URL and BENCH_DATA_DIR set)", file=sys.stderr)
        return 2
    n = int(sys.argv[1])
    tokens = data_set_tokens(n)
    if len(tokens) != n:
        print(f"tokens.py: the data set has tokens for {len(tokens)} of users 1..{n}", file=sys.stderr)
        return 1
    stored = live_tokens(os.environ["DATABASE_URL"])
    bad = [k for k, raw in enumerate(tokens, 1) if stored.get(hashlib.sha256(raw.encode()).hexdigest()) != k]
    if bad:
        print(f"tokens.py: {len(bad)} of {n} tokens are not live in the database (users {bad[:5]}...): "
              "re-run the seed hook", file=sys.stderr)  # fmt: skip
        return 1
    sys.stdout.write("".join(f"{t}\n" for t in tokens))
    return 0


if __name__ == "__main__":
    sys.exit(main())
