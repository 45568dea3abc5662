"""Rate limits: per address for anonymous calls, per user for authenticated ones, stricter on login."""

import pytest

from tests.conftest import auth


@pytest.fixture
def limits(app, monkeypatch):
    def set_limits(**values):
        for key, value in values.items():
            monkeypatch.setitem(app.config, key, value)

    return set_limits


def test_anonymous_calls_are_limited_per_address_with_headers(client, limits):
    limits(RATELIMIT_ANON="3 per minute")
    answers = [client.get("/api/auth/user/") for _ in range(4)]
    assert [a.status_code for a in answers] == [401, 401, 401, 429]
    over = answers[-1]
    assert over.get_json()["error"]["code"] == "rate_limited"
    assert int(over.headers["Retry-After"]) > 0
    assert over.headers["X-RateLimit-Limit"] == "3"
    assert over.headers["X-RateLimit-Remaining"] == "0"
    assert "X-RateLimit-Reset" in over.headers
    other_address = client.get("/api/auth/user/", environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert other_address.status_code == 401


def test_authenticated_calls_are_limited_per_user(client, make_user, limits):
    limits(RATELIMIT_USER="2 per minute", RATELIMIT_ANON="1000 per minute")
    _, alice = make_user()
    _, bob = make_user()
    codes = [client.get("/api/auth/user/", headers=auth(alice)).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    assert client.get("/api/auth/user/", headers=auth(bob)).status_code == 200


def test_password_guessing_against_one_account_is_stopped(client, make_user, limits):
    limits(RATELIMIT_LOGIN_ACCOUNT="5 per minute", RATELIMIT_LOGIN_IP="1000 per minute")
    make_user("victim")
    codes = []
    for attempt in range(8):
        # Each guess from another address: the per-account limit must still hold.
        response = client.post(
            "/api/auth/login/",
            json={"username": "victim", "password": f"guess-{attempt}-xx"},
            environ_base={"REMOTE_ADDR": f"10.0.1.{attempt}"},
        )
        codes.append(response.status_code)
    assert codes[:5] == [401] * 5
    assert codes[5:] == [429] * 3
    # The right password is refused too while the account is locked out; other accounts are unaffected.
    right = client.post("/api/auth/login/", json={"username": "victim", "password": "correct horse battery"})
    assert right.status_code == 429
    assert client.post("/api/auth/login/", json={"username": "other", "password": "x" * 12}).status_code == 401


def test_login_is_limited_per_address(client, limits):
    limits(RATELIMIT_LOGIN_IP="3 per minute", RATELIMIT_LOGIN_ACCOUNT="1000 per minute")
    codes = [
        client.post("/api/auth/login/", json={"username": f"u{i}", "password": "whatever-pass"}).status_code
        for i in range(4)
    ]
    assert codes == [401, 401, 401, 429]


def test_register_is_limited_per_address(client, limits):
    limits(RATELIMIT_REGISTER_IP="2 per hour")
    codes = [
        client.post(
            "/api/auth/register/",
            json={"username": f"new{i}", "email": f"new{i}@example.com", "password": "correct horse battery"},
        ).status_code
        for i in range(3)
    ]
    assert codes == [201, 201, 429]


def test_health_is_never_limited(client, limits):
    limits(RATELIMIT_ANON="1 per minute")
    assert all(client.get("/health").status_code == 200 for _ in range(5))
