"""Money-like races: parallel claims and transfers (on every backend), and the sweep racing a heartbeat."""

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from bsn.amounts import to_units
from bsn.clock import clock
from bsn.extensions import db
from bsn.services import mining, tokens
from tests.conftest import auth
from tests.helpers import wait_until

T0 = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)


def all_at_once(app, count, call):
    """Run `call(i)` in `count` threads released together; each thread has its own client and connection."""
    barrier = threading.Barrier(count)

    def run(i):
        client = app.test_client()
        barrier.wait(timeout=30)
        return call(client, i)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


def test_twenty_simultaneous_claims_credit_exactly_once(app, client, make_user):
    clock.freeze(T0)
    _, token = make_user()
    client.post("/api/mining/start/", headers=auth(token))
    clock.advance(minutes=4)
    client.post("/api/mining/stop/", headers=auth(token))
    pending = client.get("/api/mining/stats/", headers=auth(token)).get_json()["pending"]
    answers = all_at_once(app, 20, lambda c, i: c.post("/api/mining/claim/", headers=auth(token)))
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] + [409] * 19
    assert client.get("/api/tokens/balance/", headers=auth(token)).get_json()["balance"] == pending
    with app.app_context():
        assert tokens.audit() == []


def test_claims_racing_heartbeats_pay_each_unit_once(app, client, make_user):
    clock.freeze(T0)
    _, token = make_user()
    client.post("/api/mining/start/", headers=auth(token))
    clock.advance(minutes=2)

    def call(c, i):
        if i % 2:
            return c.patch("/api/mining/heartbeat/", headers=auth(token)).status_code
        return c.post("/api/mining/claim/", headers=auth(token)).status_code

    codes = all_at_once(app, 16, call)
    assert set(codes) <= {200, 409} and 200 in codes
    client.post("/api/mining/stop/", headers=auth(token))
    client.post("/api/mining/claim/", headers=auth(token))
    balance = to_units(client.get("/api/tokens/balance/", headers=auth(token)).get_json()["balance"])
    power = to_units(
        client.get("/api/mining/activities/", headers=auth(token)).get_json()["results"][0]["mining_power"]
    )
    assert balance == power * 120 // 3600
    with app.app_context():
        assert tokens.audit() == []


def test_parallel_transfers_between_the_same_users_neither_deadlock_nor_lose_tokens(app, client, make_user):
    alice_id, alice = make_user()
    bob_id, bob = make_user()
    with app.app_context():
        tokens.post(alice_id, to_units("10"), "grant")
        tokens.post(bob_id, to_units("10"), "grant")
        db.session.commit()

    def call(c, i):
        sender, to = (alice, bob_id) if i % 2 else (bob, alice_id)
        return c.post("/api/tokens/transfer/", json={"to_user_id": to, "amount": "0.7"}, headers=auth(sender))

    answers = all_at_once(app, 20, call)
    assert {a.status_code for a in answers} <= {201, 409}, [a.get_json() for a in answers]
    balances = [client.get("/api/tokens/balance/", headers=auth(t)).get_json()["balance"] for t in (alice, bob)]
    assert sum(to_units(b, positive=False) for b in balances) == to_units("20")
    with app.app_context():
        assert tokens.audit() == []


def test_overdrawing_in_parallel_never_goes_below_zero(app, client, make_user):
    alice_id, alice = make_user()
    bob_id, _ = make_user()
    with app.app_context():
        tokens.post(alice_id, to_units("5"), "grant")
        db.session.commit()
    answers = all_at_once(
        app,
        12,
        lambda c, i: c.post("/api/tokens/transfer/", json={"to_user_id": bob_id, "amount": "1"}, headers=auth(alice)),
    )
    assert sorted(a.status_code for a in answers) == [201] * 5 + [409] * 7
    assert client.get("/api/tokens/balance/", headers=auth(alice)).get_json()["balance"] == "0"


def _blocked_on_a_lock(app) -> bool:
    with app.app_context():
        waiting = db.session.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
        ).scalar()
        db.session.rollback()
        return waiting > 0


@pytest.mark.postgresql_only  # row locks held open across threads; SQLite serializes whole transactions
@pytest.mark.parametrize("first", ["heartbeat", "sweep"])
def test_the_sweep_racing_a_heartbeat_neither_revives_nor_stops_twice(app, make_user, client, first):
    clock.freeze(T0)
    user_id, token = make_user()
    client.post("/api/mining/start/", headers=auth(token))
    deadline = T0 + timedelta(seconds=app.config["HEARTBEAT_TIMEOUT"])
    heartbeat_at, sweep_at = deadline, deadline + timedelta(microseconds=1)
    actions = {"heartbeat": lambda: mining.renew(user_id, heartbeat_at), "sweep": lambda: mining.end_lapsed(sweep_at)}
    second = "sweep" if first == "heartbeat" else "heartbeat"
    first_wrote, results = threading.Event(), {}

    def run(name):
        with app.app_context():
            results[name] = actions[name]()
            if name == first:
                # Hold the row until the other transaction is queued behind it.
                first_wrote.set()
                wait_until(lambda: _blocked_on_a_lock(app), message=f"the {second} to wait on the row")
            db.session.commit()

    threads = [threading.Thread(target=run, args=(first,)), threading.Thread(target=run, args=(second,))]
    threads[0].start()
    assert first_wrote.wait(10)
    threads[1].start()
    for thread in threads:
        thread.join(30)
    clock.freeze(sweep_at)
    stats = client.get("/api/mining/stats/", headers=auth(token)).get_json()
    if first == "heartbeat":
        # The renewal committed first: the sweep re-read the row and left it alone.
        assert results["heartbeat"] is not None and results["sweep"] == []
        assert stats["is_mining"] is True
    else:
        # The end committed first: the heartbeat matched nothing and did not revive the session.
        assert results["heartbeat"] is None and len(results["sweep"]) == 1
        assert stats["is_mining"] is False and stats["stopped_reason"] == "heartbeat_timeout"
        with app.app_context():
            assert mining.end_lapsed(sweep_at + timedelta(hours=1)) == []
            db.session.rollback()
