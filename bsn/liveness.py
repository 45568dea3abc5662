"""Liveness of the parts an operator cannot see from the web process: database, Redis, workers, scheduler."""

from __future__ import annotations

import time

import redis
from flask import current_app
from rq import Worker
from sqlalchemy import text

from bsn.extensions import db, redis_store

SCHEDULER_HEARTBEAT_KEY = "bsn:scheduler:heartbeat"


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
    return result
