"""Job functions used by the tests' worker processes."""

import time

from sqlalchemy import select

from bsn.extensions import db, redis_store
from bsn.models import LedgerEntry
from bsn.services import tokens


def grant_once(user_id: int, reference: str) -> str:
    """Credit one token once per reference, in one transaction; waits for the test's go-ahead mid-way."""
    if db.session.scalar(select(LedgerEntry.id).where(LedgerEntry.reference == reference)):
        return "already done"
    tokens.post(user_id, 100_000_000, "grant", reference=reference)
    db.session.flush()  # written but not committed: a kill now must leave nothing behind
    redis_store.client.incr(f"test:{reference}:started")
    deadline = time.monotonic() + 60
    while not redis_store.client.exists(f"test:{reference}:go"):
        if time.monotonic() > deadline:
            raise TimeoutError("no go-ahead")
        time.sleep(0.05)
    db.session.commit()
    return "granted"
