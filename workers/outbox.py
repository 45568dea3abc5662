"""Outbox jobs: enqueueing the jobs that waited in the database while Redis was down."""

from bsn.services import outbox


def flush() -> int:
    return outbox.flush()
