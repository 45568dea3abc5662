"""/health and /ready against real worker and scheduler processes."""

import signal

from tests.helpers import flask_process, stop, wait_until


def ready(client):
    response = client.get("/ready")
    return response.status_code, response.get_json()


def test_health_is_cheap_and_always_200(client):
    response = client.get("/health")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


def test_ready_names_what_is_missing(client):
    status, body = ready(client)
    assert status == 503
    assert body["error"]["code"] == "not_ready"
    assert "worker" in body["error"]["message"] and "scheduler" in body["error"]["message"]
    assert body["checks"]["database"]["ok"] and body["checks"]["redis"]["ok"]


def test_ready_with_a_live_worker_and_scheduler_and_503_when_the_scheduler_dies(client, app, monkeypatch):
    monkeypatch.setitem(app.config, "SCHEDULER_MAX_AGE", 3)
    with (
        flask_process(app, "bsn", "worker"),
        flask_process(app, "bsn", "scheduler", SCHEDULER_INTERVAL=1, SCHEDULER_MAX_AGE=3) as scheduler,
    ):
        wait_until(lambda: ready(client)[0] == 200, timeout=30, message="/ready to turn 200")
        stop(scheduler, signal.SIGKILL)
        _, body = wait_until(lambda: (r := ready(client))[0] == 503 and r, timeout=30, message="/ready to turn 503")
        assert "scheduler" in body["error"]["message"] and "worker" not in body["error"]["message"]
        with flask_process(app, "bsn", "scheduler", SCHEDULER_INTERVAL=1, SCHEDULER_MAX_AGE=3):
            wait_until(lambda: ready(client)[0] == 200, timeout=30, message="/ready to come back")


def test_ready_reports_a_dead_database(app, client, monkeypatch):
    from sqlalchemy.exc import OperationalError

    from bsn.extensions import db

    def broken(*args, **kwargs):
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    monkeypatch.setattr(db.session, "execute", broken)
    status, body = ready(client)
    assert status == 503 and body["checks"]["database"] == {"ok": False, "error": "OperationalError"}
