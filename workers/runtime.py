"""The worker and scheduler processes, started by `flask bsn worker` and `flask bsn scheduler`."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from datetime import UTC, datetime

import redis
from flask import Flask
from rq import Worker, worker_registration
from rq.exceptions import StopRequested
from rq_scheduler import Scheduler

from bsn import liveness
from bsn.extensions import db, redis_store
from bsn.liveness import record_scheduler_heartbeat
from workers import periodic as periodic_records
from workers import queues, schedule

log = logging.getLogger(__name__)

PERIODIC_PREFIX = "periodic-"
SCHEDULE_SYNCED_KEY = "bsn:schedule:synced"  # gone with the rest of Redis's data: the schedule must be synced again


class BSNWorker(Worker):
    """RQ's Worker with a configurable grace before a silent job counts as abandoned (RQ fixes it at 60 s)."""

    abandon_grace = 60

    def get_heartbeat_ttl(self, job) -> int:
        return super().get_heartbeat_ttl(job) - 60 + self.abandon_grace

    def heartbeat(self, timeout=None, pipeline=None):
        if pipeline is None and not self.connection.sismember(worker_registration.REDIS_WORKER_KEYS, self.key):
            # Redis came back without its data: unregistered, this worker would be invisible to /ready. (Its
            # own key may exist again already: RQ rewrites single fields of it, such as its state.)
            self.log.warning("Worker %s: registration lost (Redis restarted empty?); registering again", self.name)
            self.connection.delete(self.key)
            self.register_birth()
        super().heartbeat(timeout, pipeline)


RESTART_WAIT_MAX = 30  # seconds between restarts of a worker or scheduler loop that keeps failing


def _restart_wait(wait: float) -> float:
    """Sleep until Redis answers (at least `wait` seconds); returns the next, longer wait."""
    time.sleep(wait)
    while True:
        try:
            redis_store.client.ping()
            return min(wait * 2, RESTART_WAIT_MAX)
        except redis.RedisError:
            time.sleep(1)


def run_worker(app: Flask, queue_names: list[str], burst: bool = False) -> bool:
    """Run an RQ worker inside the app context, so jobs call services as the web process does."""

    def dispose_pool_in_child() -> None:
        # A forked job process must not share the parent's database sockets.
        with app.app_context():
            for engine in db.engines.values():
                engine.dispose(close=False)

    os.register_at_fork(after_in_child=dispose_pool_in_child)
    config = app.config
    with app.app_context():
        start_watchdog(app)
        wait = 1.0
        while True:
            worker = BSNWorker(
                [queues.queue(name) for name in queue_names],
                connection=redis_store.client,
                # An idle worker heartbeats once per dequeue timeout (worker_ttl - 15 s): keep it well under
                # WORKER_MAX_AGE.
                worker_ttl=config["WORKER_TTL"],
                maintenance_interval=config["WORKER_MAINTENANCE_INTERVAL"],
                job_monitoring_interval=config["JOB_MONITORING_INTERVAL"],
            )
            worker.abandon_grace = config["JOB_ABANDON_GRACE"]
            started = time.monotonic()
            try:
                worked = worker.work(burst=burst, with_scheduler=False, logging_level=config["LOG_LEVEL"])
            except (redis.ConnectionError, redis.TimeoutError):
                log.exception("worker %s lost Redis", worker.name)  # raised by its teardown: Redis is away
                worked = False
            if burst or worker._shutdown_requested_date is not None:  # a burst's end, or SIGTERM/SIGINT
                return worked
            # RQ's worker quits on any error outside a job, a Redis restart included; the process must not
            # (under honcho one exiting dyno stops them all). A new worker starts once Redis answers.
            log.error("worker %s quit unexpectedly; starting a new one once Redis answers", worker.name)
            if time.monotonic() - started > 10 * RESTART_WAIT_MAX:
                wait = 1.0  # it had been running well: this is a new incident, not the same one again
            try:
                wait = _restart_wait(wait)
            except StopRequested:  # SIGTERM/SIGINT while waiting (RQ's handler raises it)
                return worked


def start_watchdog(app: Flask) -> threading.Thread:
    """Log an error every minute while the scheduler is gone or a periodic job is late.

    /ready reports the same, but only when something polls it; this makes sure the logs say it too.
    """

    def watch() -> None:
        while True:
            time.sleep(app.config["WATCHDOG_INTERVAL"])
            try:
                with app.app_context():
                    checks = liveness.checks()
                    for name in ("scheduler", "periodic_jobs"):
                        if not checks[name]["ok"]:
                            log.error("watchdog: %s not healthy: %s", name, checks[name])
            except Exception:
                log.exception("watchdog check failed")

    thread = threading.Thread(target=watch, name="bsn-watchdog", daemon=True)
    thread.start()
    return thread


class BSNScheduler(Scheduler):
    """rq-scheduler that also writes the heartbeat that /ready and `flask bsn status` read, and puts the
    schedule back when Redis lost it (a restart without persistence)."""

    def __init__(self, *args, heartbeat_ttl: int, app: Flask | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._heartbeat_ttl = heartbeat_ttl
        self._app = app

    def heartbeat(self) -> None:
        super().heartbeat()
        record_scheduler_heartbeat(self.connection, self._heartbeat_ttl)
        if self._app is not None and not self.connection.exists(SCHEDULE_SYNCED_KEY):
            log.warning("the schedule is gone from Redis; registering the periodic jobs again")
            sync_schedule(self._app, self)


def sync_schedule(app: Flask, scheduler: Scheduler) -> list[str]:
    """Make the schedule match PERIODIC: one entry per job, current intervals, removed jobs cancelled.

    Safe to run at every scheduler start: each job keeps its fixed id, so a restart replaces entries
    instead of adding them.
    """
    declared = {PERIODIC_PREFIX + p.id: p for p in schedule.active(app.config)}
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
            func="workers.periodic.run",
            args=[periodic.id],
            interval=interval,
            repeat=None,
            id=job_id,
            description=f"{periodic.id} every {interval} s",
            queue_name=periodic.queue,
            timeout=periodic.timeout,
            # rq-scheduler drops a schedule whose job record expired: keep it well past the next run.
            result_ttl=max(3 * interval, 3600),
        )
        record = periodic_records.read(periodic.id)
        if record.get("interval") != str(interval):
            # Lateness is measured from here until the job first succeeds at this interval.
            periodic_records.record(periodic.id, interval=str(interval), registered_at=f"{time.time():.3f}")
        log.info("scheduled %s every %d s on %s", job_id, interval, periodic.queue)
    scheduler.connection.set(SCHEDULE_SYNCED_KEY, f"{time.time():.3f}")
    return sorted(declared)


def run_scheduler(app: Flask, burst: bool = False) -> None:
    with app.app_context():
        interval = app.config["SCHEDULER_INTERVAL"]
        scheduler = BSNScheduler(
            connection=redis_store.client,
            interval=interval,
            heartbeat_ttl=max(app.config["SCHEDULER_MAX_AGE"] * 2, interval * 3),
            app=app,
        )
        wait = 1.0
        while True:
            try:
                sync_schedule(app, scheduler)
                scheduler.run(burst=burst)
                return
            except (redis.ConnectionError, redis.TimeoutError):
                # rq-scheduler's loop ends on any Redis error; the process goes on once Redis answers.
                log.exception("the scheduler lost Redis; starting again once it answers")
            wait = _restart_wait(wait)
            with contextlib.suppress(redis.RedisError):
                # Its registration may have outlived it (a persistent Redis): run() would refuse to start.
                scheduler.connection.delete(scheduler.key)
