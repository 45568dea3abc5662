"""A profile served before Flask (FastProfile) answers exactly as the view does, and looks up once."""

from __future__ import annotations

import logging

import pytest

from bsn.fastlane import SLOW as SLOW_KEY
from bsn.services import accounts, users
from tests.conftest import auth
from tests.helpers import record_calls

SLOW = {SLOW_KEY: True}  # Flask serves the call


def profile(client, token, user_id, suffix="/", headers=None, **kwargs):
    return client.get(f"/api/users/{user_id}{suffix}", headers={**auth(token), **(headers or {})}, **kwargs)


@pytest.fixture
def viewer(client, make_user):
    """A user whose first profile read (Flask's) has taught the lane."""
    user_id, token = make_user("vic")
    assert profile(client, token, user_id).status_code == 200
    return user_id, token


@pytest.fixture
def service_calls(monkeypatch):
    return record_calls(monkeypatch, users, "profile")


@pytest.fixture
def flask_calls(app, monkeypatch):
    """The calls Flask's request dispatch served (the lane's answers are not among them)."""
    return record_calls(monkeypatch, app, "full_dispatch_request")


def _compare(answer):
    headers = [(k, v) for k, v in answer.headers.items() if k not in ("Date", "Server", "X-Request-ID")]
    body = answer.get_json()
    if "error" in body:
        body["error"].pop("request_id")
    return answer.status_code, headers, body


def test_profiles_after_the_first_skip_flask(client, viewer, make_user, app, monkeypatch):
    other_id, _ = make_user("oda")
    seen = []
    monkeypatch.setattr(app, "full_dispatch_request", lambda: seen.append(1))
    answer = profile(client, viewer[1], other_id)
    assert answer.status_code == 200 and answer.get_json()["username"] == "oda" and seen == []


@pytest.mark.parametrize("hsts", [False, True])
@pytest.mark.parametrize("whose", ["own", "other", "followed"])
def test_a_profile_answers_the_same_body_and_headers_either_way(
    client, make_user, app, monkeypatch, flask_calls, hsts, whose
):
    monkeypatch.setitem(app.config, "HSTS_ENABLED", hsts)
    me, token = make_user()
    other, _ = make_user()
    if whose == "followed":
        assert client.post(f"/api/users/{other}/follow/", headers=auth(token)).status_code == 200
    target = me if whose == "own" else other
    learnt = profile(client, token, target)
    served = len(flask_calls)
    fast = profile(client, token, target)
    assert len(flask_calls) == served  # the lane answered
    slow = profile(client, token, target, environ_base=SLOW)
    assert fast.status_code == 200
    assert _compare(fast) == _compare(slow) == _compare(learnt)
    assert ("Strict-Transport-Security" in fast.headers) is hsts
    assert fast.get_json()["followers_count"] == (1 if whose == "followed" else 0)


@pytest.mark.parametrize("suffix", ["", "/?x=1"])
def test_a_spelling_the_lane_does_not_take_gets_flasks_answer(client, viewer, suffix, service_calls, flask_calls):
    fast = profile(client, viewer[1], viewer[0], suffix)
    slow = profile(client, viewer[1], viewer[0], suffix, environ_base=SLOW)
    assert _compare(fast) == _compare(slow)
    assert len(flask_calls) == 2 and len(service_calls) == 2  # Flask served both, once each


@pytest.mark.parametrize("path", ["007", "0", "9" * 19, "١٢"])
def test_an_id_the_lane_does_not_take_gets_flasks_answer(client, viewer, path, flask_calls):
    # "9" * 19 is beyond any database's integers: Flask's id converter answers 404, a lookup would fail.
    fast = client.get(f"/api/users/{path}/", headers=auth(viewer[1]))
    slow = client.get(f"/api/users/{path}/", headers=auth(viewer[1]), environ_base=SLOW)
    assert _compare(fast) == _compare(slow) and len(flask_calls) == 2


def test_a_head_request_and_a_private_network_preflight_header_are_flasks(client, viewer, flask_calls):
    url = f"/api/users/{viewer[0]}/"
    assert client.head(url, headers=auth(viewer[1])).status_code == 200
    private = {**auth(viewer[1]), "Access-Control-Request-Private-Network": "true"}
    answer = client.get(url, headers=private)
    assert answer.status_code == 200 and len(flask_calls) == 2
    assert answer.headers.get("Access-Control-Allow-Private-Network") == "false"  # flask-cors' answer, kept


def test_an_outage_in_the_service_is_flasks_503_and_the_service_runs_once(client, viewer, monkeypatch):
    import redis

    calls = []

    def down(*args, **kwargs):
        calls.append(1)
        raise redis.ConnectionError("down")

    monkeypatch.setattr(users, "profile", down)
    answer = profile(client, viewer[1], viewer[0])
    assert answer.status_code == 503 and answer.get_json()["error"]["code"] == "service_unavailable"
    assert answer.headers["Retry-After"] and len(calls) == 1


def test_a_cold_token_cache_is_authenticated_and_limited_once(client, make_user, app, monkeypatch):
    from bsn.extensions import redis_store

    monkeypatch.setitem(app.config, "RATELIMIT_USER", "3 per minute")
    me, token = make_user()
    assert profile(client, token, me).status_code == 200
    redis_store.client.delete(accounts.token_cache_key(token))
    lookups = []
    original = accounts.lookup_token
    monkeypatch.setattr(accounts, "lookup_token", lambda *a, **k: lookups.append(1) or original(*a, **k))
    answers = [profile(client, token, me) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429] and len(lookups) == 3


def test_a_revoked_token_is_flasks_401_after_the_lane_learnt(client, make_user):
    me, token = make_user()
    assert profile(client, token, me).status_code == 200
    assert client.post("/api/auth/logout/", headers=auth(token)).status_code in (200, 204)
    answer = profile(client, token, me)
    assert answer.status_code == 401 and answer.get_json()["error"]["code"] == "invalid_token"


def test_an_unknown_or_blocking_user_is_flasks_404_after_one_lookup(client, viewer, make_user, service_calls):
    # The lane called the service, which refused: the view raises that refusal instead of calling it again.
    answer = profile(client, viewer[1], 999_999)
    assert answer.status_code == 404 and answer.get_json()["error"]["code"] == "not_found"
    assert len(service_calls) == 1
    blocker, blocker_token = make_user("bea")
    assert client.post(f"/api/users/{viewer[0]}/block/", headers=auth(blocker_token)).status_code in (200, 204)
    service_calls.clear()
    assert profile(client, viewer[1], blocker).status_code == 404 and len(service_calls) == 1


def test_a_write_is_visible_on_the_next_fast_read(client, viewer, make_user):
    other, other_token = make_user("ola")
    assert profile(client, viewer[1], other).get_json()["followers_count"] == 0
    assert client.post(f"/api/users/{other}/follow/", headers=auth(viewer[1])).status_code == 200
    assert profile(client, viewer[1], other).get_json()["followers_count"] == 1
    assert client.post("/api/posts/", json={"body": "hi"}, headers=auth(other_token)).status_code == 201
    assert profile(client, viewer[1], other).get_json()["posts_count"] == 1


def test_the_rate_limit_counts_each_read_once(client, make_user, app, monkeypatch):
    monkeypatch.setitem(app.config, "RATELIMIT_USER", "3 per minute")
    me, token = make_user()
    answers = [profile(client, token, me) for _ in range(4)]  # the first teaches the lane
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[-1].get_json()["error"]["code"] == "rate_limited" and int(answers[-1].headers["Retry-After"]) > 0


def test_without_a_valid_token_the_answer_is_flasks_401_after_one_lookup(client, viewer, monkeypatch):
    lookups = []
    original = accounts.lookup_token
    monkeypatch.setattr(accounts, "lookup_token", lambda *a, **k: lookups.append(1) or original(*a, **k))
    bad = profile(client, "nope", viewer[0])
    assert bad.status_code == 401 and bad.get_json()["error"]["code"] == "invalid_token"
    assert len(lookups) == 1
    assert client.get(f"/api/users/{viewer[0]}/").status_code == 401


def test_a_fast_profile_gets_a_request_id_and_an_access_log_line(client, viewer, caplog, flask_calls):
    with caplog.at_level(logging.INFO, logger="bsn.access"):
        answer = profile(client, viewer[1], viewer[0], headers={"X-Request-ID": "req-12345678"})
    assert answer.status_code == 200 and answer.headers["X-Request-ID"] == "req-12345678" and flask_calls == []
    lines = [r for r in caplog.records if r.name == "bsn.access"]
    assert len(lines) == 1 and lines[0].getMessage().startswith(f"GET /api/users/{viewer[0]}/ 200 ")
    assert lines[0].request_id == "req-12345678" and lines[0].user_id == viewer[0]


def test_a_browser_origin_gets_cors_headers_from_flask(client, viewer, app):
    origin = app.config["CORS_ORIGINS"][0]
    answer = client.get(f"/api/users/{viewer[0]}/", headers={**auth(viewer[1]), "Origin": origin})
    assert answer.status_code == 200 and answer.headers["Access-Control-Allow-Origin"] == origin
