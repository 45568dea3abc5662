"""Money-like races on every backend: parallel claims, claims beside heartbeats, parallel transfers."""

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from bsn.amounts import to_units
from bsn.clock import clock
from bsn.extensions import db
from bsn.services import tokens
from tests.conftest import auth

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
    # Each sends 7 and receives 7 from 10: every transfer fits, so every one must succeed.
    assert [a.status_code for a in answers] == [201] * 20, [a.get_json() for a in answers]
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
