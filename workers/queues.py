"""The RQ queues, named for what they carry, and the one way to enqueue onto them."""

from __future__ import annotations

from rq import Queue, Retry
from rq.job import Job

from bsn.extensions import redis_store

HIGH = "high"  # fan-out and notifications: people are waiting for them
DEFAULT = "default"
LOW = "low"  # optimizer runs and purges: can wait
ALL = (HIGH, DEFAULT, LOW)

RESULT_TTL = 24 * 3600  # long enough to read a result in rq-dashboard the next day
FAILURE_TTL = 7 * 24 * 3600


def queue(name: str = DEFAULT) -> Queue:
    if name not in ALL:
        raise ValueError(f"unknown queue {name!r}")
    return Queue(name, connection=redis_store.client)


def enqueue(func: str, *args, queue_name: str = DEFAULT, timeout: int = 300, retries: int = 0, job_id=None) -> Job:
    """Enqueue a job by dotted path. `retries` only for jobs that are safe to run again (idempotent).

    Retries are immediate: a delayed retry would need RQ's own scheduler besides rq-scheduler, and a job
    lost with its worker is only noticed after JOB_ABANDON_GRACE anyway.
    """
    return queue(queue_name).enqueue(
        func,
        *args,
        job_timeout=timeout,
        result_ttl=RESULT_TTL,
        failure_ttl=FAILURE_TTL,
        retry=Retry(max=retries) if retries else None,
        job_id=job_id,
    )
