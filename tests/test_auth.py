"""Accounts: register, login, the caller's account, logout, token expiry, suspension, roles."""

from datetime import UTC, datetime

from sqlalchemy import select

from bsn.clock import clock
from bsn.extensions import db
from bsn.models import AuthToken, User
from tests.conftest import auth

PASSWORD = "correct horse battery"


def register(client, username="alice", email=None, password=PASSWORD):
    return client.post(
        "/api/auth/register/",
        json={"username": username, "email": email or f"{username}@example.com", "password": password},
    )


def test_register_returns_token_and_user_object(client):
    response = register(client)
    assert response.status_code == 201
    body = response.get_json()
    assert body["token"]
    assert {"id", "username", "display_name", "avatar_url"} <= set(body["user"])
    assert "password" not in body["user"] and "password_hash" not in body["user"]
    me = client.get("/api/auth/user/", headers=auth(body["token"]))
    assert me.status_code == 200 and me.get_json()["username"] == "alice"


def test_usernames_and_emails_are_unique_without_regard_to_case(client):
    assert register(client, "alice", "alice@example.com").status_code == 201
    dup_name = register(client, "ALICE", "other@example.com")
    assert dup_name.status_code == 409
    assert "username" in dup_name.get_json()["error"]["fields"]
    dup_email = register(client, "bob", "Alice@Example.com")
    assert dup_email.status_code == 409
    assert "email" in dup_email.get_json()["error"]["fields"]


def test_register_validates_every_field_and_stores_nothing(client, ctx):
    response = client.post("/api/auth/register/", json={"username": "a b", "email": "nope", "password": "x" * 12})
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "validation_error"
    assert {"username", "email"} <= set(error["fields"])
    weak = register(client, "carol", password="short")
    assert weak.status_code == 422 and "password" in weak.get_json()["error"]["fields"]
    contains_name = register(client, "carol", password="carol-is-my-password")
    assert contains_name.status_code == 422
    assert db.session.scalar(select(User).where(User.username == "carol")) is None


def test_register_refuses_unknown_fields(client):
    response = client.post(
        "/api/auth/register/",
        json={"username": "dave", "email": "dave@example.com", "password": PASSWORD, "role": "admin"},
    )
    assert response.status_code == 422
    assert "role" in response.get_json()["error"]["fields"]


def test_password_is_hashed_with_argon2(client, ctx):
    register(client)
    user = db.session.scalar(select(User).where(User.username == "alice"))
    assert user.password_hash.startswith("$argon2")
    assert PASSWORD not in user.password_hash


def test_login_with_username_or_email_case_insensitively(client):
    register(client, "Alice", "Alice@Example.com")
    by_name = client.post("/api/auth/login/", json={"username": "alice", "password": PASSWORD})
    assert by_name.status_code == 200 and by_name.get_json()["user"]["username"] == "Alice"
    by_email = client.post("/api/auth/login/", json={"username": "ALICE@example.com", "password": PASSWORD})
    assert by_email.status_code == 200
    assert by_name.get_json()["token"] != by_email.get_json()["token"]


def test_login_with_a_wrong_password_or_unknown_user_is_401(client):
    register(client)
    wrong = client.post("/api/auth/login/", json={"username": "alice", "password": "not the password"})
    unknown = client.post("/api/auth/login/", json={"username": "nobody", "password": PASSWORD})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.get_json()["error"]["code"] == unknown.get_json()["error"]["code"] == "invalid_credentials"


def test_tokens_are_stored_hashed(client, ctx):
    token = register(client).get_json()["token"]
    stored = db.session.scalars(select(AuthToken.token_hash)).all()
    assert stored and token not in stored


def test_requests_without_or_with_a_bad_token_are_401(client):
    assert client.get("/api/auth/user/").status_code == 401
    bad = client.get("/api/auth/user/", headers=auth("not-a-token"))
    assert bad.status_code == 401 and bad.get_json()["error"]["code"] == "invalid_token"
    basic = client.get("/api/auth/user/", headers={"Authorization": "Basic abc"})
    assert basic.status_code == 401


def test_patch_profile_changes_only_allowed_fields(client):
    token = register(client).get_json()["token"]
    assert client.get("/api/auth/user/", headers=auth(token)).get_json()["bio"] == ""  # now cached
    response = client.patch(
        "/api/auth/user/",
        json={"display_name": "Alice A.", "bio": "hi", "avatar_url": "https://cdn.example.com/a.png"},
        headers=auth(token),
    )
    assert response.status_code == 200
    assert response.get_json()["display_name"] == "Alice A."
    assert client.get("/api/auth/user/", headers=auth(token)).get_json()["bio"] == "hi"
    too_long = client.patch("/api/auth/user/", json={"display_name": "x" * 51}, headers=auth(token))
    assert too_long.status_code == 422
    bad_url = client.patch("/api/auth/user/", json={"avatar_url": "javascript:alert(1)"}, headers=auth(token))
    assert bad_url.status_code == 422
    role = client.patch("/api/auth/user/", json={"role": "admin"}, headers=auth(token))
    assert role.status_code == 422
    assert client.get("/api/auth/user/", headers=auth(token)).get_json()["role"] == "user"


def test_logout_revokes_that_token_at_once_even_when_cached(client, app):
    register(client)
    first = client.post("/api/auth/login/", json={"username": "alice", "password": PASSWORD}).get_json()["token"]
    second = client.post("/api/auth/login/", json={"username": "alice", "password": PASSWORD}).get_json()["token"]
    # Warm the shared cache, as another process would have.
    assert client.get("/api/auth/user/", headers=auth(first)).status_code == 200
    assert client.post("/api/auth/logout/", headers=auth(first)).status_code == 204
    assert client.get("/api/auth/user/", headers=auth(first)).status_code == 401
    assert client.get("/api/auth/user/", headers=auth(second)).status_code == 200


def test_logout_is_seen_by_another_process_with_its_own_app(client, app):
    """A second app object (another process's view) reads the same Redis and database."""
    from bsn import create_app

    token = register(client).get_json()["token"]
    other = create_app(dict(app.config)).test_client()
    assert other.get("/api/auth/user/", headers=auth(token)).status_code == 200
    assert client.post("/api/auth/logout/", headers=auth(token)).status_code == 204
    assert other.get("/api/auth/user/", headers=auth(token)).status_code == 401


def test_tokens_expire(client, app):
    clock.freeze(datetime(2026, 1, 1, tzinfo=UTC))
    token = register(client).get_json()["token"]
    assert client.get("/api/auth/user/", headers=auth(token)).status_code == 200
    clock.advance(seconds=app.config["AUTH_TOKEN_TTL"] + 1)
    assert client.get("/api/auth/user/", headers=auth(token)).status_code == 401


def test_a_suspended_user_cannot_log_in_or_use_an_old_token(client, ctx, make_user):
    from bsn.models import Role
    from bsn.services import accounts

    token = register(client).get_json()["token"]
    assert client.get("/api/auth/user/", headers=auth(token)).status_code == 200
    mod_id, _ = make_user("moderator1", role=Role.MODERATOR)
    alice = db.session.scalar(select(User).where(User.username == "alice"))
    accounts.set_suspended(db.session.get(User, mod_id), alice, True)
    old = client.get("/api/auth/user/", headers=auth(token))
    assert old.status_code in (401, 403)
    login = client.post("/api/auth/login/", json={"username": "alice", "password": PASSWORD})
    assert login.status_code == 403 and login.get_json()["error"]["code"] == "account_suspended"


def test_only_moderators_can_suspend(ctx, make_user):
    import pytest

    from bsn.errors import Forbidden
    from bsn.services import accounts

    a_id, _ = make_user()
    b_id, _ = make_user()
    with pytest.raises(Forbidden):
        accounts.set_suspended(db.session.get(User, a_id), db.session.get(User, b_id), True)


def test_create_admin_command_makes_an_admin(app, ctx):
    runner = app.test_cli_runner()
    result = runner.invoke(
        args=["bsn", "create-admin", "--username", "root", "--email", "root@example.com", "--password", PASSWORD]
    )
    assert result.exit_code == 0, result.output
    assert db.session.scalar(select(User.role).where(User.username == "root")) == "admin"
    again = runner.invoke(
        args=["bsn", "create-admin", "--username", "root", "--email", "r2@example.com", "--password", PASSWORD]
    )
    assert again.exit_code != 0 and "exists" in again.output
