"""Post creation served before Flask (FastCreatePost) answers exactly as the view does, and stores once."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import pytest
import redis
from sqlalchemy import select

from bsn.clock import clock
from bsn.fastlane import SLOW as SLOW_KEY
from bsn.services import accounts, posts
from tests.conftest import auth
from tests.helpers import record_calls

PATH = "/api/posts/"
SLOW = {SLOW_KEY: True}  # Flask serves the call
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


@pytest.fixture
def author(client, make_user):
    """A user whose first post (Flask's) has taught the lane."""
    user_id, token = make_user("amy")
    assert create(client, token, {"body": "first"}).status_code == 201
    return user_id, token


def create(client, token, body, path=PATH, headers=None, **kwargs):
    return client.post(path, json=body, headers={**auth(token), **(headers or {})}, **kwargs)


def stored(app) -> list[str]:
    from bsn.extensions import db
    from bsn.models import Post

    with app.app_context():
        return list(db.session.scalars(select(Post.body).order_by(Post.id)))


@pytest.fixture
def service_calls(monkeypatch):
    return record_calls(monkeypatch, posts, "create_post")


def test_creates_after_the_first_skip_flask(client, author, app, monkeypatch):
    seen = []
    monkeypatch.setattr(app, "full_dispatch_request", lambda: seen.append(1))
    answer = create(client, author[1], {"body": "fast"})
    assert answer.status_code == 201 and answer.get_json()["body"] == "fast"
    assert answer.get_json()["author"]["id"] == author[0]
    assert seen == []
    assert stored(app) == ["first", "fast"]


def _compare(answer):
    headers = [(k, v) for k, v in answer.headers.items() if k not in ("Date", "Server")]  # in order
    body = answer.get_json()
    body.pop("id")
    return answer.status_code, headers, body


@pytest.mark.parametrize("path", [PATH, PATH.rstrip("/")])
@pytest.mark.parametrize("hsts", [False, True])
@pytest.mark.parametrize(
    "body",
    [
        {"body": "hello"},
        {"body": "  spaced  ", "visibility": "followers"},
        {"body": "x", "visibility": "public", "media": [], "client_id": None},
        {"body": "caf\u00e9 \U0001f600 <b>bold</b>"},
    ],
)
def test_a_create_answers_the_same_body_and_headers_either_way(client, make_user, app, monkeypatch, path, hsts, body):
    clock.freeze(T0)
    monkeypatch.setitem(app.config, "HSTS_ENABLED", hsts)
    _, token = make_user()
    headers = {"X-Request-ID": "req-12345678"}
    learnt = create(client, token, body, path, headers)
    fast = create(client, token, body, path, headers)
    slow = create(client, token, body, path, headers, environ_base=SLOW)
    assert fast.status_code == 201
    assert _compare(fast) == _compare(slow) == _compare(learnt)
    assert fast.headers["X-Request-ID"] == "req-12345678"
    assert ("Strict-Transport-Security" in fast.headers) is hsts
    assert len(set(stored(app))) == 1 and len(stored(app)) == 3


def test_a_retried_client_id_answers_the_first_post(client, author, app):
    first = create(client, author[1], {"body": "once", "client_id": "c-1"})
    again = create(client, author[1], {"body": "twice", "client_id": "c-1"})
    assert first.status_code == again.status_code == 201
    assert again.get_json() == first.get_json()
    assert stored(app) == ["first", "once"]


def test_mentions_and_tags_of_a_fast_post_are_stored(client, author, make_user):
    _, bob = make_user("bob")
    made = create(client, author[1], {"body": "hi @bob #News"})
    assert made.status_code == 201
    tagged = client.get("/api/posts/?tag=news", headers=auth(bob)).get_json()["results"]
    assert [p["id"] for p in tagged] == [made.get_json()["id"]]
    kinds = [n["kind"] for n in client.get("/api/notifications/", headers=auth(bob)).get_json()["results"]]
    assert kinds == ["mention"]


# Bodies the lane leaves to Flask: (raw body, content type).
OTHERS = [
    (b"{not json", "application/json"),
    (b'"a string"', "application/json"),
    (b"[]", "application/json"),
    (b'{"body": "x", "extra": 1}', "application/json"),
    (b'{"body": 7}', "application/json"),
    (b'{"body": "x", "visibility": null}', "application/json"),
    (b'{"body": "x", "visibility": "secret"}', "application/json"),
    (b'{"body": "x", "media": "no"}', "application/json"),
    (b'{"body": "x", "media": ["http://insecure/x.png"]}', "application/json"),
    (b'{"body": "x", "media": ["https://cdn.example.com/x.png"]}', "application/json"),
    (b'{"body": "x", "client_id": ""}', "application/json"),
    (b'{"body": "x", "client_id": 7}', "application/json"),
    (b'{"body": "a\\u0000b"}', "application/json"),
    (b'{"body": "\\ud800"}', "application/json"),
    ('{"body": "%s"}' % ("x" * 5001), "application/json"),
    ('{"body": "caf\u00e9"}'.encode("utf-16"), "application/json"),
    (b"\xef\xbb\xbf" + b'{"body": "bom"}', "application/json"),
    (b'{"body": "x"}', "text/plain"),
    (b'{"body": "x"}', "application/merge-patch+json"),
    (b'{"body": "charset"}', "application/json; charset=UTF-8"),
    (b"", "application/json"),
]


def _outcome(answer):
    body = answer.get_json(silent=True) or {}
    error = body.get("error") or {}
    return answer.status_code, error.get("code"), sorted(error.get("fields") or {}), body.get("body")


@pytest.mark.parametrize(("raw", "content_type"), OTHERS)
def test_a_body_the_lane_does_not_take_gets_flasks_answer(client, author, app, raw, content_type):
    raw = raw.encode() if isinstance(raw, str) else raw
    headers = {**auth(author[1]), "Content-Type": content_type}
    lane = client.post(PATH, data=raw, headers=headers)
    flask = client.post(PATH, data=raw, headers=headers, environ_base=SLOW)
    assert _outcome(lane) == _outcome(flask)
    made = stored(app)[1:]
    assert len(made) == (2 if lane.status_code == 201 else 0)  # one post per call, or none


def test_a_body_too_large_for_the_app_is_flasks_413(client, author, app, monkeypatch):
    monkeypatch.setitem(app.config, "MAX_CONTENT_LENGTH", 64)
    answer = create(client, author[1], {"body": "y" * 100})
    assert answer.status_code == 413 and stored(app) == ["first"]


@pytest.mark.parametrize("body", ["   ", "x" * 4001])
def test_a_refusal_of_the_service_is_answered_once(client, author, app, monkeypatch, service_calls, body):
    monkeypatch.setitem(app.config, "POST_MAX_LENGTH", 4000)
    answer = create(client, author[1], {"body": body})
    assert answer.status_code == 422 and answer.get_json()["error"]["fields"] == {
        "body": answer.get_json()["error"]["fields"]["body"]
    }
    assert len(service_calls) == 1 and stored(app) == ["first"]


def test_moderation_refuses_through_the_lane(client, author, app, monkeypatch):
    monkeypatch.setitem(app.config, "MODERATION_BLOCKED_WORDS", ["spamword"])
    answer = create(client, author[1], {"body": "buy spamword now"})
    assert answer.status_code == 422 and answer.get_json()["error"]["code"] == "content_blocked"
    assert stored(app) == ["first"]


def test_redis_down_is_flasks_503_and_the_service_runs_once(client, author, monkeypatch):
    calls = []

    def down(*args, **kwargs):
        calls.append(1)
        raise redis.ConnectionError("down")

    monkeypatch.setattr(posts, "create_post", down)
    answer = create(client, author[1], {"body": "lost?"})
    assert answer.status_code == 503 and answer.get_json()["error"]["code"] == "service_unavailable"
    assert len(calls) == 1


def test_the_rate_limit_counts_each_call_once(client, make_user, app, monkeypatch):
    monkeypatch.setitem(app.config, "RATELIMIT_USER", "3 per minute")
    _, token = make_user()
    answers = [create(client, token, {"body": f"n{i}"}) for i in range(4)]  # the first teaches the lane
    assert [a.status_code for a in answers] == [201, 201, 201, 429]
    assert answers[-1].get_json()["error"]["code"] == "rate_limited"
    assert int(answers[-1].headers["Retry-After"]) > 0
    assert stored(app) == ["n0", "n1", "n2"]


def test_a_cold_token_cache_is_authenticated_and_limited_once(client, make_user, app, monkeypatch):
    from bsn.extensions import redis_store

    monkeypatch.setitem(app.config, "RATELIMIT_USER", "3 per minute")
    _, token = make_user()
    assert create(client, token, {"body": "n0"}).status_code == 201
    redis_store.client.delete(accounts.token_cache_key(token))
    lookups = []
    original = accounts.lookup_token
    monkeypatch.setattr(accounts, "lookup_token", lambda *a, **k: lookups.append(1) or original(*a, **k))
    answers = [create(client, token, {"body": f"n{i}"}) for i in (1, 2, 3)]
    assert [a.status_code for a in answers] == [201, 201, 429]
    assert len(lookups) == 3


def test_a_create_whose_limiter_lookup_failed_open_teaches_no_empty_lesson(client, make_user, app, monkeypatch):
    # Flask-Limiter fails open when its token lookup raises; the view then authenticates on its own, with no
    # hits. Learning "no hits" from that answer would leave every later create of the process unlimited.
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    monkeypatch.setitem(app.config, "RATELIMIT_USER", "2 per day")  # a setting the lane has not learnt yet
    _, token = make_user()
    original, failed = accounts.lookup_token, []

    def once_down(raw_token, rate_hits=()):
        if rate_hits and not failed:
            failed.append(1)
            raise PoolTimeout("pool exhausted")
        return original(raw_token, rate_hits)

    monkeypatch.setattr(accounts, "lookup_token", once_down)
    answers = [create(client, token, {"body": f"n{i}"}) for i in range(4)]
    assert failed == [1]
    # The first went unlimited (failed open); the next two are counted and the fourth is refused.
    assert [a.status_code for a in answers] == [201, 201, 201, 429]
    assert stored(app) == ["n0", "n1", "n2"]


class _Disconnecting:
    """A request body whose client went away before it was sent (gunicorn's reader raises)."""

    def read(self, *_):
        raise OSError("connection reset by peer")

    readinto = read


def test_a_client_gone_mid_body_gets_flasks_400_and_nothing_is_stored(client, author, app):
    answers = []
    for environ in ({}, SLOW):
        answers.append(
            client.post(
                PATH,
                headers={**auth(author[1]), "Content-Type": "application/json"},
                environ_base=environ,
                environ_overrides={"wsgi.input": _Disconnecting(), "CONTENT_LENGTH": "100"},
            )
        )
    assert [_outcome(a) for a in answers] == [_outcome(answers[1])] * 2
    assert answers[0].status_code == 400
    assert stored(app) == ["first"]


@pytest.mark.parametrize("length", ["+{}", "{}_0", " {}"])
def test_a_length_werkzeug_does_not_read_as_one_is_left_to_flask(client, author, app, length):
    raw = json.dumps({"body": "odd length"}).encode()
    answers = [
        client.post(
            PATH,
            data=raw,
            headers={**auth(author[1]), "Content-Type": "application/json"},
            environ_overrides={"CONTENT_LENGTH": length.format(len(raw))},
            environ_base=environ,
        )
        for environ in ({}, SLOW)
    ]
    assert _outcome(answers[0]) == _outcome(answers[1])
    assert len(stored(app)) == (3 if answers[0].status_code == 201 else 1)


def test_with_no_body_limit_the_lane_still_serves(client, author, app, monkeypatch):
    monkeypatch.setitem(app.config, "MAX_CONTENT_LENGTH", None)
    seen = []
    monkeypatch.setattr(app, "full_dispatch_request", lambda: seen.append(1))
    assert create(client, author[1], {"body": "unbounded"}).status_code == 201
    assert seen == [] and stored(app) == ["first", "unbounded"]


def test_without_a_valid_token_the_answer_is_flasks_401_after_one_lookup(client, author, monkeypatch):
    lookups = []
    original = accounts.lookup_token
    monkeypatch.setattr(accounts, "lookup_token", lambda *a, **k: lookups.append(1) or original(*a, **k))
    bad = create(client, "nope", {"body": "x"})
    assert bad.status_code == 401 and bad.get_json()["error"]["code"] == "invalid_token"
    assert len(lookups) == 1
    assert client.post(PATH, json={"body": "x"}).status_code == 401


def test_a_fast_create_gets_a_request_id_and_an_access_log_line(client, author, caplog):
    with caplog.at_level(logging.INFO, logger="bsn.access"):
        answer = create(client, author[1], {"body": "logged"})
    assert answer.status_code == 201 and len(answer.headers["X-Request-ID"]) == 32
    lines = [r for r in caplog.records if r.name == "bsn.access"]
    assert len(lines) == 1 and lines[0].getMessage().startswith(f"POST {PATH} 201 ")
    assert lines[0].request_id == answer.headers["X-Request-ID"] and lines[0].user_id == author[0]


def test_a_browser_origin_gets_cors_headers_from_flask(client, author, app):
    origin = app.config["CORS_ORIGINS"][0]
    answer = client.post(PATH, json={"body": "x"}, headers={**auth(author[1]), "Origin": origin})
    assert answer.status_code == 201 and answer.headers["Access-Control-Allow-Origin"] == origin


def test_concurrent_creates_on_the_gevent_server_each_store_their_own_post(app, make_user):
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    from rq import Queue

    from bsn.extensions import redis_store
    from tests.helpers import web_process

    users = [make_user() for _ in range(8)]

    def call(job):
        index, n = job
        request = urllib.request.Request(
            server.url + PATH,
            data=json.dumps({"body": f"u{index} n{n}", "client_id": f"{index}-{n}"}).encode(),
            method="POST",
            headers={**auth(users[index][1]), "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, json.loads(response.read())

    jobs = [(i % len(users), n) for n in range(20) for i in range(len(users))]
    with web_process(app) as server, ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(call, jobs))
    for (index, n), (status, body) in zip(jobs, answers, strict=True):
        assert status == 201 and body["author"]["id"] == users[index][0] and body["body"] == f"u{index} n{n}"
    assert sorted(stored(app)) == sorted(f"u{i} n{n}" for i, n in jobs)
    fan_outs = [post_id for j in Queue("high", connection=redis_store.client).jobs for post_id, _ in j.args[0]]
    assert sorted(fan_outs) == sorted(body["id"] for _, body in answers)
