"""The heartbeat's renewal served before Flask (FastHeartbeat) answers exactly as the view does, and runs once."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
import redis

from bsn.clock import clock
from bsn.fastlane import SLOW as SLOW_KEY
from bsn.services import heartbeats
from tests.conftest import auth
from tests.helpers import record_calls

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
PATH = "/api/mining/heartbeat/"
SLOW = {SLOW_KEY: True}  # Flask serves the call


@pytest.fixture
def miner(client, make_user):
    clock.freeze(T0)
    _, token = make_user()
    assert client.post("/api/mining/start/", headers=auth(token)).status_code == 200
    return token


@pytest.fixture
def renewals(monkeypatch):
    return record_calls(monkeypatch, heartbeats, "renew", lambda args, kwargs: kwargs)


def test_renewals_after_the_first_skip_flask(client, miner, app, monkeypatch):
    client.patch(PATH, headers=auth(miner))
    seen = []
    monkeypatch.setattr(app, "full_dispatch_request", lambda: seen.append(1))
    answer = client.patch(PATH, headers=auth(miner))
    assert answer.status_code == 200 and answer.get_json()["renewed"] is True
    assert seen == []


def _compare(answer):
    headers = {k: v for k, v in answer.headers.items() if k not in ("Date", "Server")}
    return answer.status_code, headers, answer.get_data()


@pytest.mark.parametrize("path", [PATH, PATH.rstrip("/")])
@pytest.mark.parametrize("hsts", [False, True])
def test_a_renewal_answers_the_same_body_and_headers_either_way(client, miner, app, monkeypatch, path, hsts):
    monkeypatch.setitem(app.config, "HSTS_ENABLED", hsts)
    headers = {**auth(miner), "X-Request-ID": "req-12345678"}
    learnt = client.patch(path, headers=headers)  # the first renewal is Flask's; its headers are learnt
    fast = client.patch(path, headers=headers)
    slow = client.patch(path, headers=headers, environ_base=SLOW)
    assert fast.status_code == 200 and fast.get_json()["renewed"] is True
    assert _compare(fast) == _compare(slow) == _compare(learnt)
    assert fast.headers["X-Request-ID"] == "req-12345678"
    assert "Strict-Transport-Security" in fast.headers if hsts else "Strict-Transport-Security" not in fast.headers


def test_a_renewal_gets_a_request_id_and_an_access_log_line(client, miner, caplog):
    client.patch(PATH, headers=auth(miner))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="bsn.access"):
        answer = client.patch(PATH, headers=auth(miner))
    assert len(answer.headers["X-Request-ID"]) == 32
    lines = [r for r in caplog.records if r.name == "bsn.access"]
    assert len(lines) == 1 and lines[0].getMessage().startswith(f"PATCH {PATH} 200 ")
    assert lines[0].request_id == answer.headers["X-Request-ID"]


def test_the_heartbeat_rate_limit_counts_each_call_once(client, miner, app, monkeypatch, renewals):
    monkeypatch.setitem(app.config, "HEARTBEAT_RATE_LIMIT", "2 per minute")
    answers = [client.patch(PATH, headers=auth(miner)) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[-1].get_json()["error"]["code"] == "rate_limited"
    assert int(answers[-1].headers["Retry-After"]) > 0
    assert len(renewals) == 3


def test_a_lapsed_session_answers_the_full_stats_after_one_renewal_call(client, miner, renewals):
    clock.advance(minutes=6)
    answer = client.patch(PATH, headers=auth(miner))
    body = answer.get_json()
    assert answer.status_code == 200 and body["is_mining"] is False
    assert body["stopped_reason"] == "heartbeat_timeout" and "pending" in body
    assert len(renewals) == 1


def test_a_browser_origin_gets_cors_headers_from_flask(client, miner, app):
    origin = app.config["CORS_ORIGINS"][0]
    answer = client.patch(PATH, headers={**auth(miner), "Origin": origin})
    assert answer.status_code == 200
    assert answer.headers["Access-Control-Allow-Origin"] == origin


def test_without_a_valid_token_the_answer_is_flasks_401(client, miner):
    assert client.patch(PATH).status_code == 401
    bad = client.patch(PATH, headers=auth("nope"))
    assert bad.status_code == 401 and bad.get_json()["error"]["code"] == "invalid_token"


def test_a_cold_token_cache_still_renews(client, miner):
    from bsn.extensions import redis_store

    for key in redis_store.client.scan_iter("auth:token:*"):
        redis_store.client.delete(key)
    answer = client.patch(PATH, headers=auth(miner))
    assert answer.status_code == 200 and answer.get_json()["is_mining"] is True


def test_redis_down_is_flasks_503_and_the_call_runs_once(client, miner, monkeypatch):
    calls = []

    def down(*args, **kwargs):
        calls.append(1)
        raise redis.ConnectionError("down")

    monkeypatch.setattr(heartbeats, "renew", down)
    answer = client.patch(PATH, headers=auth(miner))
    assert answer.status_code == 503 and answer.get_json()["error"]["code"] == "service_unavailable"
    assert len(calls) == 1


def test_concurrent_calls_on_the_gevent_server_each_get_their_own_answer(app, make_user):
    """Token lookups and renewals of concurrent requests share pipelined round trips (on gevent only)."""
    import json
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    from tests.helpers import web_process

    clock.unfreeze()
    users = [make_user() for _ in range(12)]

    def call(method, url, token):
        request = urllib.request.Request(url, method=method, headers=auth(token))
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, json.loads(response.read())

    with web_process(app) as server:
        for _, token in users:
            assert call("POST", server.url + "/api/mining/start/", token)[0] == 200
        jobs = [(i % len(users), kind) for i in range(240) for kind in ("user", "beat")]
        with ThreadPoolExecutor(16) as pool:
            answers = list(
                pool.map(
                    lambda job: call(
                        "GET" if job[1] == "user" else "PATCH",
                        server.url + ("/api/auth/user/" if job[1] == "user" else PATH),
                        users[job[0]][1],
                    ),
                    jobs,
                )
            )
    for (index, kind), (status, body) in zip(jobs, answers, strict=True):
        assert status == 200
        if kind == "user":
            assert body["id"] == users[index][0]
        else:
            assert body["renewed"] is True
