"""The token check in one Redis round trip: token cache, account copy and per-user rate-limit hits together."""

from __future__ import annotations

import pytest
import redis
from sqlalchemy import select

from bsn.extensions import db, limiter, redis_store
from bsn.models import User
from bsn.services import accounts
from tests.conftest import auth


@pytest.fixture
def limits(app, monkeypatch):
    def set_limits(**values):
        for key, value in values.items():
            monkeypatch.setitem(app.config, key, value)

    return set_limits


@pytest.fixture
def redis_calls(monkeypatch):
    """Counts the Redis commands sent by any client in this process (the app's and Flask-Limiter's)."""
    sent: list[str] = []
    original = redis.Redis.execute_command

    def counting(self, *args, **options):
        sent.append(str(args[0]))
        return original(self, *args, **options)

    monkeypatch.setattr(redis.Redis, "execute_command", counting)
    return sent


def test_an_authenticated_call_with_a_warm_cache_costs_one_redis_round_trip(client, make_user, redis_calls):
    user_id, token = make_user("alice")
    assert client.get("/api/auth/user/", headers=auth(token)).status_code == 200  # fills the caches
    redis_calls.clear()
    answer = client.get("/api/auth/user/", headers=auth(token))
    assert answer.status_code == 200
    assert answer.get_json()["id"] == user_id and answer.get_json()["username"] == "alice"
    assert len(redis_calls) == 1, redis_calls


def test_the_per_user_limit_counts_each_call_once_and_answers_429_with_headers(client, make_user, limits):
    limits(RATELIMIT_USER="3 per minute", RATELIMIT_ANON="1000 per minute")
    _, token = make_user()
    answers = [client.get("/api/auth/user/", headers=auth(token)) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    over = answers[-1]
    assert over.get_json()["error"]["code"] == "rate_limited"
    assert over.headers["X-RateLimit-Limit"] == "3"
    assert over.headers["X-RateLimit-Remaining"] == "0"
    assert int(over.headers["Retry-After"]) > 0
    assert int(over.headers["X-RateLimit-Reset"]) > 0


def test_the_lookup_hits_the_very_counter_flask_limiter_reads(client, make_user, limits, ctx):
    limits(RATELIMIT_USER="5 per minute;100 per hour", RATELIMIT_ANON="1000 per minute")
    user_id, token = make_user()
    for _ in range(2):
        assert client.get("/api/auth/user/", headers=auth(token)).status_code == 200
    with ctx.test_request_context("/api/auth/user/"):
        keys = sorted(redis_store.client.keys(f"*user:{user_id}/*"))
    assert len(keys) == 2, keys  # one counter per window, no orphan of a mismatched key
    assert [int(redis_store.client.get(key)) for key in keys] == [2, 2]
    stats = [limiter.limiter.get_window_stats(item, "bsn-rl", f"user:{user_id}", "auth.me") for item in _items()]
    assert [remaining for _, remaining in stats] == [3, 98]


def _items():
    from limits import parse_many

    return parse_many("5 per minute;100 per hour")


def test_an_invalid_token_hits_no_user_counter_and_is_limited_per_address(client, make_user, limits):
    limits(RATELIMIT_USER="1000 per minute", RATELIMIT_ANON="2 per minute")
    codes = [client.get("/api/auth/user/", headers=auth("not-a-token")).status_code for _ in range(3)]
    assert codes == [401, 401, 429]


def test_a_profile_change_is_seen_at_once_through_the_combined_lookup(client, make_user):
    _, token = make_user("alice")
    assert client.get("/api/auth/user/", headers=auth(token)).get_json()["display_name"] in ("", None, "alice")
    assert client.patch("/api/auth/user/", json={"display_name": "Alice A."}, headers=auth(token)).status_code == 200
    assert client.get("/api/auth/user/", headers=auth(token)).get_json()["display_name"] == "Alice A."


def test_the_caller_carries_the_account_copy_its_lookup_brought(app, make_user, monkeypatch):
    """The token check's round trip brought the account along: presenting the caller asks Redis nothing more.

    The copy is the one of the request's start. A handler that changes the account answers with what the
    change returns (PATCH /api/auth/user/ does), and the change rewrites the shared copy for the next request.
    """
    from bsn.auth import current_caller

    user_id, token = make_user("alice")
    with app.test_request_context("/api/auth/user/", headers=auth(token)):
        accounts.own_account(current_caller())  # fills the token cache and the account copy
    with app.test_request_context("/api/auth/user/", headers=auth(token)):
        caller = current_caller()
        assert caller.id == user_id and caller.account is not None

        def no_more_round_trips(*args, **kwargs):
            raise AssertionError("asked Redis again")

        monkeypatch.setattr(redis_store.client, "get", no_more_round_trips)
        assert accounts.own_account(caller)["username"] == "alice"
        monkeypatch.undo()
        changed = accounts.update_profile(db.session.get(User, user_id), {"bio": "changed"})
        assert changed.bio == "changed"
    with app.test_request_context("/api/auth/user/", headers=auth(token)):
        assert accounts.own_account(current_caller())["bio"] == "changed"


def test_a_stale_account_fill_cannot_overwrite_a_change(client, make_user, ctx):
    user_id, token = make_user("alice")
    stale = db.session.get(User, user_id)
    db.session.expunge(stale)  # as another request loaded it before the change
    assert client.patch("/api/auth/user/", json={"bio": "new"}, headers=auth(token)).status_code == 200
    accounts._cache_account(stale, only_if_absent=True)
    assert client.get("/api/auth/user/", headers=auth(token)).get_json()["bio"] == "new"


def test_revocation_wins_over_a_racing_cache_fill(client, make_user, ctx):
    user_id, token = make_user("alice")
    digest = accounts.token_cache_key(token).removeprefix(accounts.TOKEN_CACHE_PREFIX)
    # A request read the live row from the database before the logout, and fills the cache after it.
    row_value = f"{user_id}:{9_999_999_999.0}".encode()
    assert client.post("/api/auth/logout/", headers=auth(token)).status_code == 204
    accounts._cache_set(digest, row_value, 300, only_if_absent=True)
    assert redis_store.client.get(accounts.token_cache_key(token)) == accounts.REVOKED
    assert client.get("/api/auth/user/", headers=auth(token)).status_code == 401


def test_suspension_refuses_a_cached_token_and_drops_the_account_copy(client, make_user, ctx):
    from bsn.models import Role

    user_id, token = make_user("alice")
    mod_id, _ = make_user("mod", role=Role.MODERATOR)
    assert client.get("/api/auth/user/", headers=auth(token)).status_code == 200  # both copies cached
    accounts.set_suspended(db.session.get(User, mod_id), db.session.get(User, user_id), True)
    assert redis_store.client.get(accounts.ACCOUNT_CACHE.format(user_id)) is None
    assert client.get("/api/auth/user/", headers=auth(token)).status_code == 401


def test_without_redis_the_token_and_account_come_from_the_database(client, make_user, ctx, monkeypatch):
    user_id, token = make_user("alice")
    assert client.get("/api/auth/user/", headers=auth(token)).status_code == 200

    def unreachable(*args, **kwargs):
        raise redis.ConnectionError("down")

    monkeypatch.setattr(redis_store, "run_script", unreachable)
    monkeypatch.setattr(redis_store.client, "get", unreachable)
    assert accounts.user_id_for_token(token) == user_id
    answer = client.get("/api/auth/user/", headers=auth(token))
    assert answer.status_code == 200 and answer.get_json()["id"] == user_id
    assert db.session.scalar(select(User.username).where(User.id == user_id)) == "alice"


def test_when_the_hits_cannot_be_made_ahead_flask_limiter_makes_them(client, make_user, limits, redis_calls):
    # Another strategy in the config: the lookup leaves the per-user hit to Flask-Limiter (one more round trip).
    limits(RATELIMIT_USER="2 per minute", RATELIMIT_ANON="1000 per minute", RATELIMIT_STRATEGY="moving-window")
    _, token = make_user()
    assert client.get("/api/auth/user/", headers=auth(token)).status_code == 200
    redis_calls.clear()
    assert client.get("/api/auth/user/", headers=auth(token)).status_code == 200
    assert len(redis_calls) == 2, redis_calls
    assert client.get("/api/auth/user/", headers=auth(token)).status_code == 429


def test_a_cold_token_is_read_with_its_account_and_stored_by_the_lookups_second_round_trip(
    app, client, make_user, limits, redis_calls
):
    """A token the cache does not hold: one statement (token and account), then one script stores both and hits
    the per-user counter, which Flask-Limiter then uses as it is (each call counted once)."""
    from tests.helpers import recorded_statements

    limits(RATELIMIT_USER="2 per minute", RATELIMIT_ANON="1000 per minute")
    user_id, token = make_user("alice")
    cached = (accounts.token_cache_key(token), accounts.ACCOUNT_CACHE.format(user_id))
    with recorded_statements(app) as statements:
        for _ in range(2):
            redis_store.client.delete(*cached)
            redis_calls.clear()
            statements.clear()
            answer = client.get("/api/auth/user/", headers=auth(token))
            assert answer.status_code == 200 and answer.get_json()["username"] == "alice"
            assert len(statements) == 1 and "auth_tokens" in statements[0], statements
            assert len(redis_calls) == 2, redis_calls
            assert all(redis_store.client.exists(key) for key in cached)
    assert client.get("/api/auth/user/", headers=auth(token)).status_code == 429


def test_a_logout_between_the_database_read_and_the_fill_wins(app, client, make_user, monkeypatch):
    user_id, token = make_user("alice")
    read = accounts._token_from_database

    def logged_out_meanwhile(digest, current):
        found = read(digest, current)
        assert found[0] == user_id
        with app.test_request_context():
            accounts.logout(token)  # writes the tombstone the fill must not overwrite
        return found

    monkeypatch.setattr(accounts, "_token_from_database", logged_out_meanwhile)
    with app.test_request_context():
        assert accounts.lookup_token(token).user_id is None
    assert redis_store.client.get(accounts.token_cache_key(token)) == accounts.REVOKED
    monkeypatch.undo()
    assert client.get("/api/auth/user/", headers=auth(token)).status_code == 401
