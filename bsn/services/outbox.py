"""Enqueueing after a commit without losing the job to a Redis outage: what Redis refuses waits in the database.

A job that tells others about a committed write (a post's fan-out) is enqueued after the commit; if Redis
fails then, the write stays, and the job goes into `job_outbox` in the database instead of being lost. The
periodic `outbox-flush` (workers/outbox.py) enqueues what waits there once Redis answers again. A job may
so run twice (an enqueue that reached Redis but timed out; a flush that died between an enqueue and its
row's delete): outbox jobs must be safe to run again. This is a fallback after the commit, not a
transactional outbox: a process killed between the commit and the enqueue, or a database that refuses
the outbox row as well (the call then fails with Redis's error), still loses the job. Call it with no
transaction open: the row is written on a connection of its own.
"""

from __future__ import annotations

import logging

import redis
from sqlalchemy import delete, func, insert, select

from bsn.extensions import db, redis_store
from bsn.models import OutboxJob

log = logging.getLogger(__name__)

FLUSH_LOCK = "outbox:flush"  # one flush at a time, whatever the number of workers
# Longer than the flush job's timeout (workers/schedule.py), so a slow run cannot outlive its lock.
FLUSH_LOCK_SECONDS = 600
FLUSH_BATCH = 500
_OUTBOX = OutboxJob.__table__


def enqueue_after_commit(
    job: str, args: tuple, queue_name: str, timeout: int, retries: int = 0, cache_moves=()
) -> None:
    """Enqueue the job function `job` (a dotted path) with `args` and move `cache_moves`, atomically, in the
    batched round trip of concurrent calls; into the outbox when Redis fails. Raises only when the database
    refuses the outbox row too. `args` go through JSON there: strings, numbers, lists and str-keyed dicts."""
    try:
        _enqueue(job, args, queue_name, timeout, retries, list(cache_moves))
    except redis.RedisError as error:
        log.warning("could not enqueue %s (%s); kept in the job outbox", job, error)
        try:
            with db.engine.begin() as connection:
                connection.execute(
                    insert(_OUTBOX),
                    {
                        "func": job,
                        "args": list(args),
                        "queue": queue_name,
                        "timeout": timeout,
                        "retries": retries,
                        "cache_moves": list(cache_moves),
                    },
                )
        except Exception:
            log.exception("the job outbox is unavailable too: %s is lost", job)
            raise error from None


def flush(batch: int = FLUSH_BATCH) -> int:
    """Enqueue what waits in the outbox, oldest first; how many.

    A Redis outage stops the run (the rest waits for the next). A row that fails for any other reason (its
    queue unknown, say) is skipped, so it blocks nothing behind it, and the run then fails naming how many
    were skipped: the job shows as failed in rq-dashboard and as late in /ready.
    """
    lock = redis_store.client.lock(FLUSH_LOCK, timeout=FLUSH_LOCK_SECONDS)
    if not lock.acquire(blocking=False):
        return 0
    done, skipped, after = 0, [], 0
    try:
        while True:
            # Plain rows, not ORM objects: nothing of them is loaded again (in a transaction) after the rollback.
            rows = db.session.execute(
                select(_OUTBOX).where(_OUTBOX.c.id > after).order_by(_OUTBOX.c.id).limit(batch)
            ).all()
            db.session.rollback()  # no transaction held across the Redis calls
            for row in rows:
                after = row.id
                try:
                    _enqueue(row.func, tuple(row.args), row.queue, row.timeout, row.retries, row.cache_moves)
                except Exception as error:
                    if isinstance(error, redis.RedisError) and not isinstance(error, redis.ResponseError):
                        raise  # Redis is not there (yet): the rest waits
                    log.exception("outbox job %s (%s) could not be enqueued; skipped", row.id, row.func)
                    skipped.append(row.id)
                    continue
                # Enqueued before it is deleted: a flush that dies between the two enqueues it again next time.
                db.session.execute(delete(_OUTBOX).where(_OUTBOX.c.id == row.id))
                db.session.commit()
                done += 1
            if len(rows) < batch:
                break
    finally:
        try:
            lock.release()
        except redis.RedisError:
            log.warning("the outbox flush lock could not be released; it expires in %s s", FLUSH_LOCK_SECONDS)
    if skipped:
        raise RuntimeError(f"{len(skipped)} outbox job(s) could not be enqueued (ids {skipped[:10]}); the rest were")
    return done


def waiting() -> int:
    """How many jobs wait in the outbox."""
    return db.session.scalar(select(func.count()).select_from(_OUTBOX))


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
