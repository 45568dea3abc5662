"""Liveness of the parts an operator cannot see from the web process: database, Redis, workers, scheduler."""

from __future__ import annotations

import time

import redis
from flask import current_app
from rq import Worker
from sqlalchemy import text

from bsn.extensions import db, redis_store

SCHEDULER_HEARTBEAT_KEY = "bsn:scheduler:heartbeat"
_TIMES = {"last_success", "last_failure", "registered_at"}


def record_scheduler_heartbeat(connection: redis.Redis, ttl: int) -> None:
    connection.set(SCHEDULER_HEARTBEAT_KEY, f"{time.time():.3f}", ex=ttl)


def scheduler_age(connection: redis.Redis) -> float | None:
    raw = connection.get(SCHEDULER_HEARTBEAT_KEY)
    return None if raw is None else max(0.0, time.time() - float(raw))


def worker_ages(connection: redis.Redis) -> dict[str, float]:
    """Seconds since each registered RQ worker's last heartbeat."""
    ages = {}
    now = time.time()
    for worker in Worker.all(connection=connection):
        beat = worker.last_heartbeat
        if beat is not None:
            ages[worker.name] = max(0.0, now - beat.timestamp())
    return ages


def checks() -> dict[str, dict]:
    """Each part's state; `ok` is False for a part that is down or stale."""
    config = current_app.config
    result: dict[str, dict] = {}
    try:
        db.session.execute(text("SELECT 1"))
        result["database"] = {"ok": True}
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready", reported by name
        db.session.rollback()
        result["database"] = {"ok": False, "error": type(exc).__name__}
    connection = redis_store.client
    try:
        connection.ping()
        result["redis"] = {"ok": True}
    except redis.RedisError as exc:
        result["redis"] = {"ok": False, "error": type(exc).__name__}
        result["worker"] = {"ok": False, "error": "redis unavailable"}
        result["scheduler"] = {"ok": False, "error": "redis unavailable"}
        return result
    ages = worker_ages(connection)
    freshest = min(ages.values(), default=None)
    result["worker"] = {
        "ok": freshest is not None and freshest <= config["WORKER_MAX_AGE"],
        "count": len(ages),
        "age_seconds": None if freshest is None else round(freshest, 1),
    }
    age = scheduler_age(connection)
    result["scheduler"] = {
        "ok": age is not None and age <= config["SCHEDULER_MAX_AGE"],
        "age_seconds": None if age is None else round(age, 1),
    }
    late = [row["id"] for row in periodic_jobs() if row["late"]]
    result["periodic_jobs"] = {"ok": not late, "late": late}
    return result


def periodic_jobs() -> list[dict]:
    """Each declared periodic job: interval, last success, and whether it is over twice its interval late."""
    from workers import periodic as records
    from workers import schedule

    now = time.time()
    rows = []
    for periodic in schedule.active(current_app.config):
        interval = int(current_app.config[periodic.interval_setting])
        record = {k: float(v) if k in _TIMES else v for k, v in records.read(periodic.id).items()}
        last_success, last_failure = record.get("last_success"), record.get("last_failure")
        # Measured from registration until the first success, so a new job is not late at once.
        since = max((t for t in (last_success, record.get("registered_at")) if t is not None), default=None)
        failing = last_failure is not None and (last_success is None or last_failure > last_success)
        rows.append(
            {
                "id": periodic.id,
                "queue": periodic.queue,
                "interval_seconds": interval,
                "last_success_age_seconds": None if last_success is None else round(now - last_success, 1),
                "last_error": record.get("error") if failing else None,
                "late": since is None or now - since > 2 * interval,
            }
        )
    return rows


def status() -> dict:
    """Everything an operator needs at a glance (rq-dashboard does not show rq-scheduler's schedule)."""
    from rq import Queue
    from rq_scheduler import Scheduler

    from workers.queues import ALL
    from workers.runtime import PERIODIC_PREFIX

    connection = redis_store.client
    next_runs = {
        job.id[len(PERIODIC_PREFIX) :]: at
        for job, at in Scheduler(connection=connection).get_jobs(with_times=True)
        if job.id.startswith(PERIODIC_PREFIX)
    }
    schedule = []
    for row in periodic_jobs():
        at = next_runs.get(row["id"])
        schedule.append({**row, "next_run": None if at is None else at.isoformat() + "Z"})
    now = time.time()
    workers = [
        {
            "name": w.name,
            "state": w.get_state(),
            "queues": w.queue_names(),
            "heartbeat_age_seconds": None if w.last_heartbeat is None else round(now - w.last_heartbeat.timestamp(), 1),
            "current_job": w.get_current_job_id(),
        }
        for w in Worker.all(connection=connection)
    ]
    queues = []
    for name in ALL:
        q = Queue(name, connection=connection)
        queues.append(
            {
                "name": name,
                "queued": q.count,
                "started": q.started_job_registry.count,
                "failed": q.failed_job_registry.count,
            }
        )
    from bsn.services import outbox

    # Jobs Redis refused after their commit wait in the database, where rq-dashboard does not look.
    return {
        "checks": checks(),
        "schedule": schedule,
        "workers": workers,
        "queues": queues,
        "outbox_waiting": outbox.waiting(),
    }
