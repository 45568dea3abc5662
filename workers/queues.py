"""The RQ queues, named for what they carry, and the one way to enqueue onto them."""

from __future__ import annotations

from rq import Queue

from bsn.extensions import redis_store

HIGH = "high"  # fan-out and notifications: people are waiting for them
DEFAULT = "default"
LOW = "low"  # optimizer runs and purges: can wait
ALL = (HIGH, DEFAULT, LOW)


def queue(name: str = DEFAULT) -> Queue:
    if name not in ALL:
        raise ValueError(f"unknown queue {name!r}")
    return Queue(name, connection=redis_store.client)
