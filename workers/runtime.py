"""The worker and scheduler processes, started by `flask bsn worker` and `flask bsn scheduler`."""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime

from flask import Flask
from rq import Worker
from rq_scheduler import Scheduler

from bsn.extensions import db, redis_store
from bsn.liveness import record_scheduler_heartbeat
from workers import queues
from workers.schedule import PERIODIC

log = logging.getLogger(__name__)

PERIODIC_PREFIX = "periodic-"


def run_worker(app: Flask, queue_names: list[str], burst: bool = False) -> bool:
    """Run an RQ worker inside the app context, so jobs call services as the web process does."""

    def dispose_pool_in_child() -> None:
        # A forked job process must not share the parent's database sockets.
        with app.app_context():
            for engine in db.engines.values():
                engine.dispose(close=False)

    os.register_at_fork(after_in_child=dispose_pool_in_child)
    with app.app_context():
        worker = Worker([queues.queue(name) for name in queue_names], connection=redis_store.client)
        return worker.work(burst=burst, with_scheduler=False, logging_level=app.config["LOG_LEVEL"])


class BSNScheduler(Scheduler):
    """rq-scheduler that also writes the heartbeat that /ready and `flask bsn status` read."""

    def __init__(self, *args, heartbeat_ttl: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._heartbeat_ttl = heartbeat_ttl

    def heartbeat(self) -> None:
        super().heartbeat()
        record_scheduler_heartbeat(self.connection, self._heartbeat_ttl)


def sync_schedule(app: Flask, scheduler: Scheduler) -> list[str]:
    """Make the schedule match PERIODIC: one entry per job, current intervals, removed jobs cancelled."""
    declared = {PERIODIC_PREFIX + p.id: p for p in PERIODIC}
    for job in scheduler.get_jobs():
        if job.id.startswith(PERIODIC_PREFIX) and job.id not in declared:
            scheduler.cancel(job)
            job.delete()
            log.info("cancelled periodic job %s (no longer declared)", job.id)
    now = datetime.now(UTC).replace(tzinfo=None)
    for job_id, periodic in declared.items():
        interval = int(app.config[periodic.interval_setting])
        scheduler.cancel(job_id)
        scheduler.schedule(
            scheduled_time=now,
            func=periodic.func,
            interval=interval,
            repeat=None,
            id=job_id,
            queue_name=periodic.queue,
            timeout=periodic.timeout,
            result_ttl=max(2 * interval, 3600),
        )
        log.info("scheduled %s every %d s on %s", job_id, interval, periodic.queue)
    return sorted(declared)


def run_scheduler(app: Flask, burst: bool = False) -> None:
    with app.app_context():
        interval = app.config["SCHEDULER_INTERVAL"]
        scheduler = BSNScheduler(
            connection=redis_store.client,
            interval=interval,
            heartbeat_ttl=max(app.config["SCHEDULER_MAX_AGE"] * 2, interval * 3),
        )
        sync_schedule(app, scheduler)
        scheduler.run(burst=burst)
