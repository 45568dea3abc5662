"""The accrual rule at its edges, with the server's clock under the test's control."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from bsn.amounts import UNIT, to_units
from bsn.clock import clock
from bsn.services import mining
from tests.conftest import auth

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
BASE = to_units("0.6")  # default MINING_BASE_RATE, per hour


@pytest.fixture
def miner(client, make_user):
    clock.freeze(T0)
    user_id, token = make_user()

    class Miner:
        id = user_id
        headers = auth(token)

        def call(self, method, path):
            response = client.open(f"/api/mining/{path}/", method=method, headers=self.headers)
            assert response.status_code < 500, response.data
            return response

        def start(self):
            return self.call("POST", "start").get_json()

        def heartbeat(self):
            return self.call("PATCH", "heartbeat").get_json()

        def activity(self):
            return self.call("PATCH", "activity-check").get_json()

        def stats(self):
            return self.call("GET", "stats").get_json()

        def stop(self):
            return self.call("POST", "stop").get_json()

        def claim(self):
            return self.call("POST", "claim")

        def keep_mining(self, minutes):
            keep_mining(client, self.headers, minutes)

    return Miner()


def keep_mining(client, headers, minutes: int) -> None:
    """Advance the clock minute by minute, with the heartbeats and activity a visible tab sends."""
    for minute in range(1, minutes + 1):
        clock.advance(minutes=1)
        client.patch("/api/mining/heartbeat/", headers=headers)
        if minute % 30 == 0:
            client.patch("/api/mining/activity-check/", headers=headers)


def units(text: str) -> int:
    return to_units(text, positive=False)


def expected(power_units: int, seconds: float) -> int:
    return power_units * int(seconds * 1_000_000) // (3600 * 1_000_000)


def first_power() -> int:
    # A first session: no streak bonus yet, the first-session achievement (+1%).
    return BASE * 101 // 100


def test_start_reports_a_live_session(miner):
    stats = miner.start()
    assert stats["is_mining"] is True
    assert stats["started_at"] == "2026-03-02T08:00:00Z"
    assert units(stats["mining_power"]) == first_power()
    assert stats["pending"] == "0" and stats["stopped_reason"] is None
    assert stats["streak_days"] == 1


def test_start_is_idempotent_while_mining(miner):
    first = miner.start()
    clock.advance(minutes=1)
    again = miner.start()
    assert again["started_at"] == first["started_at"]
    assert units(again["pending"]) == expected(first_power(), 60)


def test_the_predecessors_case_accrues_exactly_five_minutes_after_the_last_heartbeat(miner):
    """Heartbeats for an hour, then offline for 12 h 44 min: nothing accrues past last heartbeat + 300 s."""
    miner.start()
    for beat in range(1, 121):
        clock.advance(seconds=30)
        assert miner.heartbeat()["is_mining"] is True
        if beat % 20 == 0:
            miner.activity()
    last_heartbeat = clock.now()
    clock.advance(hours=12, minutes=44)
    stats = miner.stats()
    assert stats["is_mining"] is False
    assert stats["stopped_reason"] == "heartbeat_timeout"
    assert stats["ended_at"] == (last_heartbeat + timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    assert units(stats["pending"]) == expected(first_power(), 3600 + 300)
    # Claiming pays exactly that, whatever the sweep did or did not do.
    claimed = miner.claim().get_json()
    assert units(claimed["claimed"]) == expected(first_power(), 3600 + 300)


def test_a_heartbeat_exactly_at_the_timeout_keeps_mining(miner, app):
    miner.start()
    clock.advance(seconds=app.config["HEARTBEAT_TIMEOUT"])
    answer = miner.heartbeat()
    assert answer["is_mining"] is True
    clock.advance(seconds=100)
    assert miner.stats()["is_mining"] is True


def test_a_heartbeat_just_after_the_timeout_does_not_revive(miner, app):
    miner.start()
    clock.advance(seconds=app.config["HEARTBEAT_TIMEOUT"], microseconds=1)
    answer = miner.heartbeat()
    assert answer["is_mining"] is False
    assert answer["stopped_reason"] == "heartbeat_timeout"
    assert answer["ended_at"] == "2026-03-02T08:05:00Z"
    clock.advance(hours=1)
    assert miner.heartbeat()["is_mining"] is False
    assert units(miner.stats()["pending"]) == expected(first_power(), 300)


def test_the_activity_timeout_ends_a_session_kept_alive_by_heartbeats(miner, app):
    miner.start()
    for _ in range(10):
        clock.advance(minutes=1)
        miner.heartbeat()
    miner.activity()  # last activity at 08:10
    activity_timeout = app.config["ACTIVITY_TIMEOUT"]
    elapsed = 600
    while elapsed < 600 + activity_timeout + 600:
        clock.advance(seconds=60)
        elapsed += 60
        miner.heartbeat()
    stats = miner.stats()
    assert stats["is_mining"] is False
    assert stats["stopped_reason"] == "inactive"
    assert units(stats["pending"]) == expected(first_power(), 600 + activity_timeout)


def test_activity_check_answers_whether_mining_goes_on(miner, app):
    miner.start()
    clock.advance(minutes=1)
    assert miner.activity()["is_mining"] is True
    clock.advance(seconds=app.config["HEARTBEAT_TIMEOUT"] + 1)
    answer = miner.activity()
    assert answer["is_mining"] is False and answer["stopped_reason"] == "heartbeat_timeout"


def test_sessions_are_capped_at_max_session(miner, app, monkeypatch):
    monkeypatch.setitem(app.config, "HEARTBEAT_TIMEOUT", 4 * 3600)
    monkeypatch.setitem(app.config, "ACTIVITY_TIMEOUT", 4 * 3600)
    miner.start()
    for _ in range(9):  # 27 h of heartbeats and activity every 3 h
        clock.advance(hours=3)
        miner.heartbeat()
        miner.activity()
    stats = miner.stats()
    assert stats["is_mining"] is False and stats["stopped_reason"] == "max_session"
    assert stats["ended_at"] == "2026-03-03T08:00:00Z"
    assert units(stats["pending"]) == expected(first_power(), 24 * 3600)


def test_stop_then_heartbeat_stays_stopped(miner):
    miner.start()
    miner.keep_mining(20)
    stopped = miner.stop()
    assert stopped["is_mining"] is False and stopped["stopped_reason"] == "stopped"
    clock.advance(seconds=10)
    answer = miner.heartbeat()
    assert answer["is_mining"] is False and answer["stopped_reason"] == "stopped"
    assert units(miner.stats()["pending"]) == expected(first_power(), 20 * 60)
    assert miner.stop()["stopped_reason"] == "stopped"  # idempotent


def test_a_late_sweep_changes_no_answer_and_a_second_sweep_does_nothing(miner, ctx):
    miner.start()
    clock.advance(minutes=3)
    miner.heartbeat()
    clock.advance(hours=12, minutes=44)
    before = miner.stats()
    assert len(mining.sweep()) == 1
    after = miner.stats()
    assert before == after
    assert mining.sweep() == []
    assert miner.stats() == after


def test_the_sweep_leaves_live_sessions_alone(miner, ctx):
    miner.start()
    clock.advance(minutes=4)
    assert mining.sweep() == []
    assert miner.stats()["is_mining"] is True


def test_the_sweep_publishes_mining_stopped(miner, ctx, monkeypatch):
    from bsn import realtime

    sent = []
    monkeypatch.setattr(realtime, "emit", lambda event, data, namespace, room: sent.append((event, data, room)))
    miner.start()
    clock.advance(hours=1)
    sent.clear()
    mining.announce_stopped(mining.sweep())
    assert sent == [
        (
            "mining_stopped",
            {"reason": "heartbeat_timeout", "ended_at": T0 + timedelta(minutes=5)},
            f"user:{miner.id}",
        )
    ]


def test_claim_during_mining_pays_what_accrued_and_mining_goes_on(miner):
    miner.start()
    clock.advance(minutes=2)
    miner.heartbeat()
    clock.advance(minutes=2)
    first = miner.claim()
    assert first.status_code == 200
    assert units(first.get_json()["claimed"]) == expected(first_power(), 240)
    assert miner.stats()["is_mining"] is True
    assert miner.stats()["pending"] == "0"
    clock.advance(minutes=1)
    miner.stop()
    second = miner.claim().get_json()
    total = units(first.get_json()["claimed"]) + units(second["claimed"])
    # Split claims lose nothing to rounding: together they pay the whole session.
    assert total == expected(first_power(), 300)
    assert units(second["balance"]) == total
    assert miner.claim().status_code == 409


def test_claim_with_nothing_pending_is_409_and_writes_nothing(miner, client):
    response = miner.claim()
    assert response.status_code == 409 and response.get_json()["error"]["code"] == "nothing_to_claim"
    assert client.get("/api/tokens/transactions/", headers=miner.headers).get_json()["results"] == []


def test_claims_land_in_the_ledger(miner, client):
    miner.start()
    miner.keep_mining(120)
    miner.stop()
    claimed = miner.claim().get_json()
    assert units(claimed["claimed"]) == expected(first_power(), 7200)
    entries = client.get("/api/tokens/transactions/", headers=miner.headers).get_json()["results"]
    assert [(e["kind"], e["amount"]) for e in entries] == [("mining_claim", claimed["claimed"])]
    assert client.get("/api/tokens/balance/", headers=miner.headers).get_json()["balance"] == claimed["claimed"]


def test_streaks_grow_on_consecutive_days_and_reset_after_a_missed_day(miner):
    for day in range(3):
        clock.freeze(T0 + timedelta(days=day))
        assert miner.start()["streak_days"] == day + 1
        miner.stop()
    clock.freeze(T0 + timedelta(days=3, hours=1))
    assert miner.stats()["streak_days"] == 3  # today not mined yet, but yesterday was
    clock.freeze(T0 + timedelta(days=5))
    assert miner.stats()["streak_days"] == 0
    assert miner.start()["streak_days"] == 1


def test_mining_power_follows_the_documented_formula(ctx):
    assert mining.power_for(1, set()) == BASE
    assert mining.power_for(3, set()) == BASE * 104 // 100  # +2% per day after the first
    assert mining.power_for(50, set()) == BASE * 120 // 100  # streak bonus capped at 20%
    assert mining.power_for(7, {"first_session", "streak_7"}) == BASE * (100 + 12 + 1 + 5) // 100


def test_achievements_are_listed_earned_and_next(miner, client, app, monkeypatch):
    before = client.get("/api/mining/achievements/", headers=miner.headers).get_json()
    assert before["earned"] == [] and before["next"][0]["code"] == "first_session"
    monkeypatch.setitem(app.config, "MINING_BASE_RATE", "11")
    miner.start()
    miner.keep_mining(60)
    miner.stop()
    miner.claim()
    after = client.get("/api/mining/achievements/", headers=miner.headers).get_json()
    assert [a["code"] for a in after["earned"]] == ["first_session", "mined_10"]
    assert "mined_10" not in [a["code"] for a in after["next"]]


def test_leaderboard_ranks_all_time_and_this_week_with_my_rank(client, make_user, app, monkeypatch):
    clock.freeze(T0)
    players = [make_user() for _ in range(3)]
    for hours, (_, token) in zip([1, 3, 2], players, strict=True):
        client.post("/api/mining/start/", headers=auth(token))
        keep_mining(client, auth(token), hours * 60)
        client.post("/api/mining/stop/", headers=auth(token))
        client.post("/api/mining/claim/", headers=auth(token))
        clock.freeze(T0)
    _, outsider = make_user()
    board = client.get("/api/mining/leaderboard/?limit=2", headers=auth(players[0][1])).get_json()
    assert [row["user"]["id"] for row in board["results"]] == [players[1][0], players[2][0]]
    assert board["me"]["rank"] == 3
    week = client.get("/api/mining/leaderboard/?period=week", headers=auth(outsider)).get_json()
    assert len(week["results"]) == 3 and week["me"] == {"rank": None, "mined": "0"}
    assert client.get("/api/mining/leaderboard/?period=year", headers=auth(outsider)).status_code == 422


def test_leaderboards_rebuild_from_the_database(client, make_user, ctx):
    from bsn.extensions import redis_store

    clock.freeze(T0)
    _, token = make_user()
    client.post("/api/mining/start/", headers=auth(token))
    clock.advance(hours=1)
    client.post("/api/mining/stop/", headers=auth(token))
    mined = client.post("/api/mining/claim/", headers=auth(token)).get_json()["claimed"]
    redis_store.client.flushdb()
    mining.rebuild_leaderboards()
    board = client.get("/api/mining/leaderboard/?period=week", headers=auth(token)).get_json()
    assert board["me"] == {"rank": 1, "mined": mined}


def test_activities_list_sessions_newest_first_with_cursors(miner, client):
    for _ in range(3):
        miner.start()
        miner.keep_mining(10)
        miner.stop()
    page1 = client.get("/api/mining/activities/?limit=2", headers=miner.headers).get_json()
    assert len(page1["results"]) == 2 and page1["next_cursor"]
    page2 = client.get(f"/api/mining/activities/?limit=2&cursor={page1['next_cursor']}", headers=miner.headers)
    results = page1["results"] + page2.get_json()["results"]
    assert [r["id"] for r in results] == sorted((r["id"] for r in results), reverse=True)
    assert len(results) == 3 and page2.get_json()["next_cursor"] is None
    assert all(r["end_reason"] == "stopped" for r in results)
    bad = client.get("/api/mining/activities/?cursor=!!!", headers=miner.headers)
    assert bad.status_code == 422


def test_mining_calls_need_a_token(client):
    for method, path in [("POST", "start"), ("PATCH", "heartbeat"), ("GET", "stats"), ("POST", "claim")]:
        assert client.open(f"/api/mining/{path}/", method=method).status_code == 401


def test_amount_strings_are_exact(miner):
    miner.start()
    clock.advance(seconds=1)
    pending = miner.stats()["pending"]
    assert isinstance(pending, str)
    assert Decimal(pending) * UNIT == units(pending)


# ---- heartbeats buffered in Redis ----


def db_session_row(app):
    from sqlalchemy import select

    from bsn.extensions import db
    from bsn.models import MiningSession

    with app.app_context():
        return db.session.scalars(select(MiningSession)).one()


def test_heartbeats_reach_the_database_when_flushed(miner, app):
    from bsn.services import heartbeats

    miner.start()
    miner.keep_mining(3)
    assert db_session_row(app).last_heartbeat == T0  # still only in Redis
    with app.app_context():
        assert heartbeats.flush() == 1
        assert heartbeats.flush() == 0
    assert db_session_row(app).last_heartbeat == T0 + timedelta(minutes=3)
    assert db_session_row(app).expires_at == T0 + timedelta(minutes=8)


def test_the_sweep_flushes_first_and_leaves_sessions_renewed_in_redis_alone(miner, ctx):
    miner.start()
    miner.keep_mining(10)  # the database alone would say it lapsed at 08:05
    assert mining.sweep() == []
    assert miner.stats()["is_mining"] is True


def test_a_heartbeat_landing_while_the_sweep_runs_keeps_the_session(miner, ctx, app, monkeypatch):
    """The sweep fixes its instant, then flushes; a heartbeat in between must not be lost or overruled."""
    from bsn.services import heartbeats

    miner.start()
    clock.advance(seconds=app.config["HEARTBEAT_TIMEOUT"])  # the deadline, to the microsecond
    sweep_at = clock.now() + timedelta(microseconds=1)
    real_flush = heartbeats.flush

    def heartbeat_then_flush():
        assert miner.heartbeat()["is_mining"] is True  # at the deadline: still valid
        return real_flush()

    monkeypatch.setattr(heartbeats, "flush", heartbeat_then_flush)
    assert mining.sweep(sweep_at) == []
    clock.freeze(sweep_at)
    assert miner.stats()["is_mining"] is True


def test_a_heartbeat_after_the_sweep_ended_a_session_does_not_revive_it(miner, ctx):
    miner.start()
    clock.advance(minutes=6)
    assert len(mining.sweep()) == 1
    answer = miner.heartbeat()
    assert answer["is_mining"] is False and answer["stopped_reason"] == "heartbeat_timeout"
    assert mining.sweep() == []


def test_losing_redis_costs_at_most_the_unflushed_heartbeats_and_mining_goes_on(miner, ctx):
    from bsn.extensions import redis_store
    from bsn.services import heartbeats

    miner.start()
    miner.keep_mining(4)
    heartbeats.flush()  # the database knows 08:04
    miner.keep_mining(3)  # 08:05-08:07 only in Redis
    redis_store.client.flushdb()
    clock.advance(seconds=90)  # 08:08:30, before the flushed deadline (08:09)
    assert miner.heartbeat()["is_mining"] is True  # re-seeded from the database
    assert miner.stats()["last_heartbeat"] == "2026-03-02T08:08:30Z"
    clock.advance(minutes=30)
    stats = miner.stats()
    assert stats["ended_at"] == "2026-03-02T08:13:30Z"
    assert units(stats["pending"]) == expected(first_power(), 13 * 60 + 30)


def test_a_lost_redis_never_pays_for_time_without_a_heartbeat(miner, ctx):
    from bsn.extensions import redis_store
    from bsn.services import heartbeats

    miner.start()
    miner.keep_mining(4)
    heartbeats.flush()
    miner.keep_mining(3)
    redis_store.client.flushdb()
    clock.advance(hours=2)
    stats = miner.stats()
    # The heartbeats of 08:05-08:07 were lost with Redis: the session ends 5 min after the flushed one.
    assert stats["ended_at"] == "2026-03-02T08:09:00Z"
    assert units(stats["pending"]) == expected(first_power(), 9 * 60)


def test_heartbeats_are_rate_limited_per_user(miner, app, monkeypatch):
    monkeypatch.setitem(app.config, "HEARTBEAT_RATE_LIMIT", "3 per minute")
    miner.start()
    answers = [miner.call("PATCH", "heartbeat") for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[-1].get_json()["error"]["code"] == "rate_limited"
    assert int(answers[-1].headers["Retry-After"]) >= 1


def test_heartbeat_authentication(client, miner, ctx):
    from bsn.extensions import redis_store

    miner.start()
    assert client.patch("/api/mining/heartbeat/").status_code == 401
    assert client.patch("/api/mining/heartbeat/", headers=auth("not-a-token")).status_code == 401
    for key in redis_store.client.scan_iter("auth:token:*"):
        redis_store.client.delete(key)  # a cold token cache: the heartbeat authenticates the slow way
    assert miner.heartbeat()["is_mining"] is True
    assert client.post("/api/auth/logout/", headers=miner.headers).status_code == 204
    assert client.patch("/api/mining/heartbeat/", headers=miner.headers).status_code == 401
