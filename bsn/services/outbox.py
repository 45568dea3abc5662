"""Enqueueing after a commit without losing the job: what Redis refuses waits in the database (the job outbox).

A job that tells others about a committed write (a post's fan-out) is enqueued after the commit; if Redis
fails then, the write stays, and the job goes into `job_outbox` in the database instead of being lost. The
periodic `outbox-flush` (workers/outbox.py) enqueues what waits there once Redis answers again. A job may
so run twice (an enqueue that reached Redis but timed out), never zero times: outbox jobs must be safe to
run again.
"""

from __future__ import annotations

import logging

import redis
from sqlalchemy import delete, func, insert, select

from bsn.clock import now as clock_now
from bsn.extensions import db, redis_store
from bsn.models import OutboxJob

log = logging.getLogger(__name__)

FLUSH_LOCK = "outbox:flush"  # one flush at a time, whatever the number of workers
FLUSH_BATCH = 500


def enqueue_after_commit(
    job: str, args: tuple, queue_name: str, timeout: int, retries: int = 0, cache_moves=()
) -> None:
    """Enqueue the job function `job` (a dotted path) with `args` and move `cache_moves`, atomically, in the
    batched round trip of concurrent calls; into the outbox when Redis fails. Raises only when the database
    refuses the outbox row too."""
    try:
        _enqueue(job, args, queue_name, timeout, retries, list(cache_moves))
    except redis.RedisError as error:
        log.warning("could not enqueue %s (%s); kept in the job outbox", job, error)
        try:
            with db.engine.begin() as connection:
                connection.execute(
                    insert(OutboxJob.__table__),
                    {
                        "func": job,
                        "args": list(args),
                        "queue": queue_name,
                        "timeout": timeout,
                        "retries": retries,
                        "cache_moves": list(cache_moves),
                        "created_at": clock_now(),
                    },
                )
        except Exception:
            log.exception("the job outbox is unavailable too: %s is lost", job)
            raise error from None


def flush(batch: int = FLUSH_BATCH) -> int:
    """Enqueue what waits in the outbox, oldest first; how many. Stops at the first Redis failure (the rest waits)."""
    lock = redis_store.client.lock(FLUSH_LOCK, timeout=300)
    if not lock.acquire(blocking=False):
        return 0
    done = 0
    try:
        while True:
            rows = db.session.scalars(select(OutboxJob).order_by(OutboxJob.id).limit(batch)).all()
            db.session.rollback()  # no transaction held across the Redis calls
            for row in rows:
                _enqueue(row.func, tuple(row.args), row.queue, row.timeout, row.retries, row.cache_moves)
                # Enqueued before it is deleted: a flush that dies between the two enqueues it again next time.
                db.session.execute(delete(OutboxJob).where(OutboxJob.id == row.id))
                db.session.commit()
                done += 1
            if len(rows) < batch:
                return done
    finally:
        lock.release()


def waiting() -> int:
    """How many jobs wait in the outbox."""
    return db.session.scalar(select(func.count()).select_from(OutboxJob))


def _enqueue(job: str, args: tuple, queue_name: str, timeout: int, retries: int, cache_moves: list[str]) -> None:
    # RQ writes its enqueue into a pipeline that is never executed; its commands, wrapped in MULTI/EXEC with
    # the generations' move, go out with the requests' token checks and cache reads (`run_commands`):
    # executing the pipeline itself cost a pooled connection's check-out and a round trip of its own.
    from rq import Retry

    from bsn import cache
    from workers import queues

    queue = queues.queue(queue_name)
    pipe = queue.connection.pipeline(transaction=False)
    queue.enqueue_call(
        job,
        args=args,
        timeout=timeout,
        result_ttl=queues.RESULT_TTL,
        failure_ttl=queues.FAILURE_TTL,
        retry=Retry(max=retries) if retries else None,
        pipeline=pipe,
    )
    cache.bump_in(pipe, cache_moves)
    redis_store.run_commands([("MULTI",), *(command for command, _options in pipe.command_stack), ("EXEC",)])
