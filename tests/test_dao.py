"""DAO: proposals, votes weighted by a balance snapshot at the start, closing and outcomes."""

from datetime import UTC, datetime, timedelta

import pytest

from bsn.clock import clock
from bsn.services import dao
from tests.conftest import auth

T0 = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def members(client, make_user, grant):
    """Alice (600 tokens) proposes; Bob (300) and Carol (100) vote. Supply: 1,000."""
    clock.freeze(T0)
    people = {}
    for name, amount in (("alice", "600"), ("bob", "300"), ("carol", "100")):
        user_id, token = make_user(name)
        grant(user_id, amount)
        people[name] = (user_id, token)
    clock.advance(minutes=1)
    return people


def propose(client, token, **overrides):
    body = {
        "title": "Raise the base rate",
        "options": ["yes", "no"],
        "ends_at": (clock.now() + timedelta(days=1)).isoformat(),
        "quorum_bps": 2000,
        **overrides,
    }
    return client.post("/api/dao/proposals/", json=body, headers=auth(token))


def vote(client, token, proposal_id, option):
    return client.post(f"/api/dao/proposals/{proposal_id}/vote/", json={"option": option}, headers=auth(token))


def detail(client, token, proposal_id):
    return client.get(f"/api/dao/proposals/{proposal_id}/", headers=auth(token)).get_json()


def test_proposing_needs_a_stake(client, members, make_user):
    _, poor = make_user("poor")
    response = propose(client, poor)
    assert response.status_code == 403 and response.get_json()["error"]["code"] == "insufficient_stake"
    assert propose(client, members["carol"][1]).status_code == 201  # exactly the minimum (100)
    created = propose(client, members["alice"][1])
    assert created.status_code == 201 and created.get_json()["status"] == "open"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"options": ["only one"]}, "options"),
        ({"options": ["yes", "YES"]}, "options"),
        ({"quorum_bps": 10001}, "quorum_bps"),
        ({"ends_at": "2020-01-01T00:00:00+00:00"}, "ends_at"),
        ({"ends_at": "tomorrow"}, "ends_at"),
        ({"ends_at": "2026-07-01T14:00:00"}, "ends_at"),  # no time zone
        ({"kind": "coup"}, "kind"),
        ({"title": ""}, "title"),
    ],
)
def test_bad_proposals_are_refused(client, members, overrides, field):
    response = propose(client, members["alice"][1], **overrides)
    assert response.status_code == 422 and field in response.get_json()["error"]["fields"]


def test_votes_are_weighted_by_the_balance_at_the_start_and_changeable(client, members):
    proposal = propose(client, members["alice"][1]).get_json()
    pid = proposal["id"]
    assert vote(client, members["bob"][1], pid, 1).get_json()["weight"] == "300"
    assert vote(client, members["carol"][1], pid, 0).status_code == 200
    assert detail(client, members["bob"][1], pid)["results"]["weights"] == ["100", "300"]
    assert vote(client, members["bob"][1], pid, 0).status_code == 200  # changed his mind
    results = detail(client, members["bob"][1], pid)["results"]
    assert results["weights"] == ["400", "0"] and results["voters"] == 2
    assert results["supply_at_start"] == "1000" and results["quorum"] == "200" and results["leading"] == "passed"
    assert vote(client, members["bob"][1], pid, 2).status_code == 422


def test_a_snapshot_is_unaffected_by_a_transfer_during_the_vote(client, members):
    pid = propose(client, members["alice"][1]).get_json()["id"]
    clock.advance(minutes=5)
    moved = client.post(
        "/api/tokens/transfer/",
        json={"to_user_id": members["bob"][0], "amount": "500"},
        headers=auth(members["alice"][1]),
    )
    assert moved.status_code == 201
    assert vote(client, members["bob"][1], pid, 0).get_json()["weight"] == "300"  # not 800
    assert vote(client, members["alice"][1], pid, 1).get_json()["weight"] == "600"  # not 100


def test_voting_needs_tokens_at_the_start(client, members, make_user, grant):
    pid = propose(client, members["alice"][1]).get_json()["id"]
    late_id, late = make_user("late")
    clock.advance(minutes=1)
    grant(late_id, "50")
    response = vote(client, late, pid, 0)
    assert response.status_code == 403 and response.get_json()["error"]["code"] == "no_voting_power"


def test_a_vote_after_the_end_is_refused(client, members):
    pid = propose(client, members["alice"][1]).get_json()["id"]
    clock.advance(days=1)
    response = vote(client, members["bob"][1], pid, 0)
    assert response.status_code == 409 and response.get_json()["error"]["code"] == "voting_closed"


def test_a_vote_before_the_start_is_refused(client, members):
    starts = (clock.now() + timedelta(hours=1)).isoformat()
    pid = propose(client, members["alice"][1], starts_at=starts).get_json()["id"]
    assert vote(client, members["bob"][1], pid, 0).get_json()["error"]["code"] == "voting_not_started"


@pytest.mark.parametrize(
    ("votes", "quorum_bps", "outcome"),
    [
        ({"bob": 0, "carol": 1}, 2000, "passed"),  # 300 for, 100 against; 400 of 1,000 cast >= 20%
        ({"bob": 1, "carol": 0}, 2000, "rejected"),
        ({"carol": 0}, 2000, "no_quorum"),  # 100 of 1,000 < 20%
        ({"alice": 0, "bob": 1, "carol": 1}, 5000, "passed"),  # 600 for against 400
        ({"bob": 0, "carol": 0, "alice": 1}, 5000, "rejected"),  # 400 for against 600
        ({}, 0, "no_quorum"),
    ],
)
def test_the_closing_job_records_the_outcome_once(client, members, ctx, votes, quorum_bps, outcome):
    pid = propose(client, members["alice"][1], quorum_bps=quorum_bps).get_json()["id"]
    for name, option in votes.items():
        assert vote(client, members[name][1], pid, option).status_code == 200
    assert dao.close_due() == 0  # not ended yet
    clock.advance(days=1)
    assert dao.close_due() == 1
    closed = detail(client, members["bob"][1], pid)
    assert closed["status"] == "closed" and closed["outcome"] == outcome and closed["results"]["outcome"] == outcome
    assert dao.close_due() == 0
    assert detail(client, members["bob"][1], pid) == closed


def test_closing_notifies_author_and_voters(client, members, ctx, monkeypatch):
    from bsn import realtime

    sent = []
    monkeypatch.setattr(realtime, "emit", lambda event, data, namespace, room: sent.append((event, room, data)))
    pid = propose(client, members["alice"][1]).get_json()["id"]
    assert [(event, room) for event, room, _ in sent] == [("proposal_opened", "dao")]
    vote(client, members["bob"][1], pid, 0)
    clock.advance(days=2)
    dao.close_due()
    pushed = sorted((room, data["kind"]) for event, room, data in sent[1:] if event == "notification")
    assert pushed == sorted(
        [(f"user:{members['alice'][0]}", "proposal_closed"), (f"user:{members['bob'][0]}", "proposal_closed")]
    )
    stored = client.get("/api/notifications/", headers=auth(members["bob"][1])).get_json()["results"]
    assert [(n["kind"], n["data"]) for n in stored] == [("proposal_closed", {"proposal_id": pid, "outcome": "passed"})]


def test_proposals_are_listed_by_status(client, members):
    first = propose(client, members["alice"][1]).get_json()["id"]
    second = propose(client, members["alice"][1], title="Second").get_json()["id"]
    listed = client.get("/api/dao/proposals/?status=open&limit=1", headers=auth(members["bob"][1])).get_json()
    assert [p["id"] for p in listed["results"]] == [second] and listed["next_cursor"]
    rest = client.get(
        f"/api/dao/proposals/?status=open&cursor={listed['next_cursor']}", headers=auth(members["bob"][1])
    )
    assert [p["id"] for p in rest.get_json()["results"]] == [first]
    assert client.get("/api/dao/proposals/?status=closed", headers=auth(members["bob"][1])).get_json()["results"] == []
    assert client.get("/api/dao/proposals/999999/", headers=auth(members["bob"][1])).status_code == 404
