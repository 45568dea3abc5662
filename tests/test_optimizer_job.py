"""The optimizer job: runs the module as a subprocess, caches a good report, keeps it through any failure."""

import json

import pytest

from bsn.amounts import to_str
from bsn.extensions import redis_store
from bsn.models import Role
from bsn.services import mining
from tests.conftest import auth
from workers.mining import optimize

REPORT_KEYS = list(mining.OPTIMIZATION_KEYS.values())


@pytest.fixture
def optimizer(app, monkeypatch):
    def use(module, timeout=30):
        monkeypatch.setitem(app.config, "MINING_OPTIMIZER_MODULE", module)
        monkeypatch.setitem(app.config, "MINING_OPTIMIZATION_TIMEOUT", timeout)

    return use


def last_run():
    return json.loads(redis_store.client.get(mining.OPTIMIZATION_LAST_RUN_KEY))


def test_a_good_run_caches_the_report_in_five_keys_with_their_ttls(ctx, optimizer):
    optimizer("tests.fake_optimizers.good")
    assert optimize() == {"status": "ok", "best_algorithm": "bsn"}
    client = redis_store.client
    report = json.loads(client.get(mining.OPTIMIZATION_KEYS["report"]))
    assert report["best_algorithm"] == "bsn" and report["sessions"] == 0
    assert "--sessions" in report["argv"] and "--heartbeat-timeout" in report["argv"]
    assert client.get(mining.OPTIMIZATION_KEYS["best_algorithm"]) == b"bsn"
    assert client.get(mining.OPTIMIZATION_KEYS["total_profit"]) == b"1.5"
    assert client.get(mining.OPTIMIZATION_KEYS["timestamp"]).endswith(b"Z")
    for key in REPORT_KEYS:
        assert 3500 < client.ttl(key) <= 3600
    assert 0 < client.ttl(mining.OPTIMIZATION_LAST_RUN_KEY) <= 24 * 3600
    assert last_run()["status"] == "ok"


@pytest.mark.parametrize(
    ("module", "timeout", "reason", "exit_code"),
    [
        ("tests.fake_optimizers.not_there", 30, "exit code not 0", 1),
        ("tests.fake_optimizers.fails", 30, "exit code not 0", 3),
        ("tests.fake_optimizers.broken", 30, "output is not JSON", 0),
        ("tests.fake_optimizers.hangs", 1, "timed out after 1 s", None),
    ],
)
def test_a_failed_run_keeps_the_last_good_report_and_records_why(
    ctx, optimizer, caplog, module, timeout, reason, exit_code
):
    optimizer("tests.fake_optimizers.good")
    optimize()
    good = {key: redis_store.client.get(key) for key in REPORT_KEYS}
    optimizer(module, timeout)
    assert optimize()["status"] == "failed"
    assert {key: redis_store.client.get(key) for key in REPORT_KEYS} == good
    run = last_run()
    assert run["status"] == "failed" and run["reason"] == reason and run["exit_code"] == exit_code
    if module.endswith("fails"):
        assert "the optimizer broke" in run["stderr_tail"] and run["stdout"].startswith("partial output")
    if module.endswith("broken"):
        assert run["stdout"].startswith("{not json")
    if module.endswith("not_there"):
        assert "No module named" in run["stderr_tail"]
    failure_logs = [r for r in caplog.records if r.levelname == "ERROR" and "optimizer" in r.getMessage()]
    assert failure_logs and reason in failure_logs[-1].getMessage()


def test_the_endpoint_serves_the_report_whole_to_admins_only(client, ctx, make_user, optimizer):
    _, admin = make_user("boss", role=Role.ADMIN)
    _, user = make_user()
    missing = client.get("/api/mining/optimization/", headers=auth(user))
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "no_report"
    optimizer("tests.fake_optimizers.good")
    optimize()
    whole = client.get("/api/mining/optimization/", headers=auth(admin)).get_json()
    assert whole["total_profit"] == "1.5" and "offline_mining" in whole
    part = client.get("/api/mining/optimization/", headers=auth(user)).get_json()
    assert part["best_algorithm"] == "bsn" and "total_profit" not in part and "offline_mining" not in part
    assert client.get("/api/mining/optimization/").status_code == 401


def test_the_real_optimizer_reads_what_the_job_exports(client, ctx, make_user, app, monkeypatch):
    """End to end: mined sessions -> export -> `python -m workers.optimizer` -> cached report."""
    from datetime import UTC, datetime

    from bsn.clock import clock

    clock.freeze(datetime(2026, 6, 1, 9, 0, tzinfo=UTC))
    _, token = make_user()
    client.post("/api/mining/start/", headers=auth(token))
    clock.advance(minutes=2)
    client.patch("/api/mining/heartbeat/", headers=auth(token))
    clock.advance(hours=12, minutes=44)  # the predecessor's case: gone without stopping
    monkeypatch.setitem(app.config, "MINING_OPTIMIZATION_WINDOW", 7 * 86400)
    outcome = optimize()
    report = json.loads(redis_store.client.get(mining.OPTIMIZATION_KEYS["report"]))
    assert outcome == {"status": "ok", "best_algorithm": report["best_algorithm"]}
    assert report["sessions"] == 1 and report["mode"] == "minimal"  # no market file configured
    # BSN's rule never pays past the heartbeat cover, so the detector finds nothing to flag.
    assert report["offline_mining"] == []
    assert report["algorithms"]["bsn"]["uncovered_tokens"] == "0"
    # Replayed under BSN's rule, the session pays 2 min + the 5 min heartbeat cover at its power.
    power = mining.power_for(1, {"first_session"})
    assert report["algorithms"]["bsn"]["tokens_emitted"] == to_str(power * 7 * 60 // 3600)
