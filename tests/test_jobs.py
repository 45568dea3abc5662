"""RQ and rq-scheduler with real processes: the schedule is exactly what workers/schedule.py declares."""

import signal

import pytest
from rq.job import Job
from rq_scheduler import Scheduler
from sqlalchemy import func, select

from bsn import liveness
from bsn.extensions import db, redis_store
from bsn.models import LedgerEntry
from tests.helpers import flask_process, stop, wait_until
from workers import periodic, queues, schedule
from workers.runtime import PERIODIC_PREFIX, sync_schedule


def scheduled(app):
    with app.app_context():
        return {job.id: job.meta.get("interval") for job in Scheduler(connection=redis_store.client).get_jobs()}


def expected_ids(app):
    return {PERIODIC_PREFIX + p.id for p in schedule.active(app.config)}


def test_restarting_the_scheduler_leaves_exactly_one_schedule_per_job(app):
    with app.app_context():
        redis_store.client.delete(liveness.SCHEDULER_HEARTBEAT_KEY)
    for _ in range(3):
        with flask_process(app, "bsn", "scheduler", SCHEDULER_INTERVAL=1) as process:
            wait_until(lambda: scheduled(app).keys() == expected_ids(app), message="the schedule")
            with app.app_context():
                wait_until(lambda: liveness.scheduler_age(redis_store.client) is not None, message="a heartbeat")
            stop(process)
    with app.app_context():
        entries = redis_store.client.zrange(Scheduler.scheduled_jobs_key, 0, -1)
    assert sorted(e.decode() for e in entries) == sorted(expected_ids(app))


def test_a_changed_interval_takes_effect_and_a_removed_job_is_cancelled(app, ctx, monkeypatch):
    scheduler = Scheduler(connection=redis_store.client)
    sync_schedule(app, scheduler)
    assert scheduled(app)[PERIODIC_PREFIX + "mining-sweep"] == app.config["CLEANUP_INTERVAL"]
    monkeypatch.setitem(app.config, "CLEANUP_INTERVAL", 42)
    monkeypatch.setattr(schedule, "PERIODIC", tuple(p for p in schedule.PERIODIC if p.id != "ledger-audit"))
    sync_schedule(app, scheduler)
    now_scheduled = scheduled(app)
    assert now_scheduled[PERIODIC_PREFIX + "mining-sweep"] == 42
    assert PERIODIC_PREFIX + "ledger-audit" not in now_scheduled
    assert not Job.exists(PERIODIC_PREFIX + "ledger-audit", connection=redis_store.client)
    assert len(now_scheduled) == len(schedule.active(app.config))


def test_the_optimizer_is_scheduled_only_when_enabled(app, ctx, monkeypatch):
    scheduler = Scheduler(connection=redis_store.client)
    sync_schedule(app, scheduler)
    assert PERIODIC_PREFIX + "mining-optimizer" not in scheduled(app)
    monkeypatch.setitem(app.config, "ENABLE_MINING_OPTIMIZATION", True)
    sync_schedule(app, scheduler)
    assert scheduled(app)[PERIODIC_PREFIX + "mining-optimizer"] == app.config["MINING_OPTIMIZATION_INTERVAL"]
    monkeypatch.setitem(app.config, "ENABLE_MINING_OPTIMIZATION", False)
    sync_schedule(app, scheduler)
    assert PERIODIC_PREFIX + "mining-optimizer" not in scheduled(app)


def test_periodic_jobs_record_success_and_lateness_shows(app, ctx, monkeypatch):
    scheduler = Scheduler(connection=redis_store.client)
    sync_schedule(app, scheduler)
    assert not any(row["late"] for row in liveness.periodic_jobs())
    periodic.run("mining-sweep")
    sweep = next(row for row in liveness.periodic_jobs() if row["id"] == "mining-sweep")
    assert sweep["last_success_age_seconds"] is not None and sweep["last_success_age_seconds"] < 5
    # Pretend the last success was three intervals ago: the job is late, and /ready says so.
    interval = app.config["CLEANUP_INTERVAL"]
    past = float(periodic.read("mining-sweep")["last_success"]) - 3 * interval
    periodic.record("mining-sweep", last_success=f"{past:.3f}", registered_at=f"{past:.3f}")
    checks = liveness.checks()
    assert checks["periodic_jobs"] == {"ok": False, "late": ["mining-sweep"]}


def test_a_failing_periodic_job_records_its_error(ctx, monkeypatch):
    from workers import mining as mining_jobs

    def broken():
        raise RuntimeError("boom")

    monkeypatch.setattr(mining_jobs, "sweep", broken)
    with pytest.raises(RuntimeError):
        periodic.run("mining-sweep")
    row = next(row for row in liveness.periodic_jobs() if row["id"] == "mining-sweep")
    assert row["last_error"] == "RuntimeError: boom"


def test_the_scheduler_and_a_worker_run_the_periodic_jobs(app):
    with flask_process(app, "bsn", "scheduler", SCHEDULER_INTERVAL=1), flask_process(app, "bsn", "worker"):

        def all_ran():
            with app.app_context():
                return all(row["last_success_age_seconds"] is not None for row in liveness.periodic_jobs())

        wait_until(all_ran, timeout=30, message="every periodic job to succeed once")


def test_a_worker_killed_mid_job_leaves_nothing_half_written_and_the_retry_finishes_once(app, ctx, make_user):
    user_id, _ = make_user()
    client = redis_store.client
    job = queues.enqueue("tests.jobs.grant_once", user_id, "kill-test", timeout=60, retries=2)
    # Notice the dead job within seconds, not RQ's minutes (an idle worker cleans up once per WORKER_TTL - 15 s).
    fast_recovery = {
        "JOB_MONITORING_INTERVAL": 1,
        "JOB_ABANDON_GRACE": 1,
        "WORKER_MAINTENANCE_INTERVAL": 1,
        "WORKER_TTL": 17,
    }
    with flask_process(app, "bsn", "worker", **fast_recovery) as worker:
        wait_until(lambda: client.get("test:kill-test:started"), message="the job to start")
        stop(worker, signal.SIGKILL)  # the whole process group: worker and its work horse
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(LedgerEntry)) == 0
    client.set("test:kill-test:go", 1)
    with flask_process(app, "bsn", "worker", **fast_recovery):
        wait_until(lambda: job.get_status(refresh=True) == "finished", timeout=60, message="the retried job to finish")
    assert job.return_value() == "granted"
    db.session.rollback()
    assert db.session.scalars(select(LedgerEntry.reference)).all() == ["kill-test"]
    assert int(client.get("test:kill-test:started")) == 2


def test_flask_bsn_status_shows_the_schedule_and_fails_when_not_ready(app, ctx):
    import json

    sync_schedule(app, Scheduler(connection=redis_store.client))
    result = app.test_cli_runner().invoke(args=["bsn", "status", "--json"])
    assert result.exit_code == 1  # no worker, no scheduler heartbeat
    report = json.loads(result.output)
    sweep = next(row for row in report["schedule"] if row["id"] == "mining-sweep")
    assert sweep["interval_seconds"] == app.config["CLEANUP_INTERVAL"] and sweep["next_run"]
    assert report["checks"]["worker"]["ok"] is False and {q["name"] for q in report["queues"]} == {
        "high",
        "default",
        "low",
    }
    assert report["outbox_waiting"] == 0
    text = app.test_cli_runner().invoke(args=["bsn", "status"])
    assert "mining-sweep" in text.output and "BAD scheduler" in text.output
    assert "job outbox (waiting for Redis): 0" in text.output
