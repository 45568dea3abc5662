"""Passwords and addresses: change, reset by an e-mailed single-use token, e-mail verification, all through RQ."""

from __future__ import annotations

import email
import os
import re
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from bsn.clock import clock
from bsn.extensions import db
from bsn.models import AccountToken, User
from tests.conftest import auth
from tests.helpers import run_jobs
from workers import queues

PASSWORD = "correct horse battery"
NEW_PASSWORD = "purple monkey dishwasher"


@pytest.fixture
def outbox(app, tmp_path, monkeypatch):
    """The e-mails the file backend wrote during this test, oldest first, as email.message objects."""
    monkeypatch.setitem(app.config, "MAIL_BACKEND", "file")
    monkeypatch.setitem(app.config, "MAIL_FILE_DIR", str(tmp_path / "mail"))

    def read():
        directory = tmp_path / "mail"
        if not directory.exists():
            return []
        names = sorted(n for n in os.listdir(directory) if not n.startswith("."))
        return [email.message_from_bytes((directory / n).read_bytes()) for n in names]

    return read


def token_in(message) -> str:
    return re.search(r"token=([0-9]+\.[A-Za-z0-9_-]+)", message.get_payload(decode=True).decode()).group(1)


def register(client, username="alice"):
    response = client.post(
        "/api/auth/register/",
        json={"username": username, "email": f"{username}@example.com", "password": PASSWORD},
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()["token"]


def login(client, password, username="alice"):
    return client.post("/api/auth/login/", json={"username": username, "password": password})


def request_reset(client, address="alice@example.com"):
    return client.post("/api/auth/password-reset/", json={"email": address})


def reset_token(app, client, outbox, address="alice@example.com") -> str:
    assert request_reset(client, address).status_code == 202
    run_jobs(app)
    return token_in(outbox()[-1])


# ---- verification ----


def test_registering_e_mails_a_verification_link_that_verifies_the_address_once(app, client, ctx, outbox):
    register(client)
    assert outbox() == []  # nothing is sent inside the request
    run_jobs(app)
    [message] = outbox()
    assert message["To"] == "alice@example.com"
    assert "Confirm your e-mail" in message["Subject"]
    token = token_in(message)
    assert db.session.scalar(select(User.email_verified_at)) is None
    session = login(client, PASSWORD).get_json()["token"]
    assert client.get("/api/auth/user/", headers=auth(session)).get_json()["email_verified"] is False

    assert client.post("/api/auth/verify-email/", json={"token": token}).status_code == 204
    db.session.expire_all()
    assert db.session.scalar(select(User.email_verified_at)) is not None
    # The cached copy of the account changed with it.
    assert client.get("/api/auth/user/", headers=auth(session)).get_json()["email_verified"] is True
    again = client.post("/api/auth/verify-email/", json={"token": token})
    assert again.status_code == 422 and again.get_json()["error"]["code"] == "invalid_account_token"


def test_a_verified_address_needs_no_new_link_and_a_resend_replaces_the_old_one(app, client, outbox):
    token = register(client)
    run_jobs(app)
    first = token_in(outbox()[0])
    assert client.post("/api/auth/verify-email/resend/", headers=auth(token)).status_code == 202
    run_jobs(app)
    second = token_in(outbox()[-1])
    assert client.post("/api/auth/verify-email/", json={"token": first}).status_code == 422
    assert client.post("/api/auth/verify-email/", json={"token": second}).status_code == 204
    resend = client.post("/api/auth/verify-email/resend/", headers=auth(token))
    assert resend.status_code == 409 and resend.get_json()["error"]["code"] == "already_verified"


def test_the_queued_job_carries_no_token(app, client, ctx):
    register(client)
    [job] = queues.queue(queues.HIGH).get_jobs()
    assert job.func_name == "workers.mail.send_account_email"
    row = db.session.scalar(select(AccountToken))
    assert job.args == (row.id,)
    # The row holds only the nonce: the token is an HMAC of it under SECRET_KEY.
    assert row.nonce not in str(job.args)


# ---- password reset ----


def test_a_reset_sets_the_new_password_ends_every_session_and_works_once(app, client, outbox):
    session = register(client)
    token = reset_token(app, client, outbox)
    assert outbox()[-1]["Subject"] == "Reset your BSN password"

    assert (
        client.post("/api/auth/password-reset/confirm/", json={"token": token, "password": NEW_PASSWORD}).status_code
        == 204
    )
    assert client.get("/api/auth/user/", headers=auth(session)).status_code == 401
    assert login(client, PASSWORD).status_code == 401
    assert login(client, NEW_PASSWORD).status_code == 200
    again = client.post("/api/auth/password-reset/confirm/", json={"token": token, "password": "another fine pass"})
    assert again.status_code == 422
    assert login(client, NEW_PASSWORD).status_code == 200


def test_a_weak_new_password_is_refused_and_leaves_the_link_working(app, client, outbox):
    register(client)
    token = reset_token(app, client, outbox)
    weak = client.post("/api/auth/password-reset/confirm/", json={"token": token, "password": "short"})
    assert weak.status_code == 422 and "password" in weak.get_json()["error"]["fields"]
    assert login(client, PASSWORD).status_code == 200
    assert (
        client.post("/api/auth/password-reset/confirm/", json={"token": token, "password": NEW_PASSWORD}).status_code
        == 204
    )


def test_an_unknown_address_gets_the_same_answer_and_no_e_mail(app, client, outbox):
    register(client)
    run_jobs(app)
    sent = len(outbox())
    known, unknown = request_reset(client), request_reset(client, "nobody@example.com")
    assert (known.status_code, known.data) == (unknown.status_code, unknown.data)
    assert known.status_code == 202 and "on its way" in known.get_json()["message"]
    run_jobs(app)
    assert len(outbox()) == sent + 1


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # forged signature
        lambda t: str(int(t.split(".")[0]) + 1) + "." + t.split(".")[1],  # another row's id
        lambda t: t.split(".")[0],  # no signature
        lambda t: "x" + t,
        lambda t: "9" * 40 + ".abc",
    ],
)
def test_a_forged_or_malformed_token_is_refused(app, client, outbox, mangle):
    register(client)
    token = reset_token(app, client, outbox)
    response = client.post("/api/auth/password-reset/confirm/", json={"token": mangle(token), "password": NEW_PASSWORD})
    assert response.status_code == 422
    assert login(client, PASSWORD).status_code == 200


def test_a_reset_link_expires_and_a_newer_one_replaces_it(app, client, outbox):
    clock.freeze(datetime(2026, 3, 1, 12, tzinfo=UTC))
    register(client)
    old = reset_token(app, client, outbox)
    newer = reset_token(app, client, outbox)
    assert (
        client.post("/api/auth/password-reset/confirm/", json={"token": old, "password": NEW_PASSWORD}).status_code
        == 422
    )
    clock.advance(seconds=app.config["PASSWORD_RESET_TTL"] + 1)
    assert (
        client.post("/api/auth/password-reset/confirm/", json={"token": newer, "password": NEW_PASSWORD}).status_code
        == 422
    )
    assert login(client, PASSWORD).status_code == 200


def test_a_link_that_no_longer_applies_is_not_sent(app, client, outbox):
    register(client)
    run_jobs(app)
    sent = len(outbox())
    request_reset(client)
    request_reset(client)  # supersedes the first before any job ran
    run_jobs(app)
    assert len(outbox()) == sent + 1


def test_reset_requests_are_rate_limited_per_address(app, client, monkeypatch):
    monkeypatch.setitem(app.config, "RATELIMIT_ACCOUNT_EMAIL", "2 per hour")
    register(client)
    codes = [request_reset(client).status_code for _ in range(3)]
    assert codes == [202, 202, 429]


def test_reset_input_is_validated(client):
    assert client.post("/api/auth/password-reset/", json={"email": "not an address"}).status_code == 422
    assert client.post("/api/auth/password-reset/confirm/", json={"token": "1.abc"}).status_code == 422


# ---- password change ----


def change(client, token, current, new):
    return client.post(
        "/api/auth/password/", headers=auth(token), json={"current_password": current, "new_password": new}
    )


def test_changing_the_password_ends_other_sessions_and_hands_this_client_a_new_token(app, client):
    here = register(client)
    elsewhere = login(client, PASSWORD).get_json()["token"]
    response = change(client, here, PASSWORD, NEW_PASSWORD)
    assert response.status_code == 200
    fresh = response.get_json()["token"]
    assert client.get("/api/auth/user/", headers=auth(elsewhere)).status_code == 401
    assert client.get("/api/auth/user/", headers=auth(here)).status_code == 401
    assert client.get("/api/auth/user/", headers=auth(fresh)).status_code == 200
    assert login(client, NEW_PASSWORD).status_code == 200


@pytest.mark.parametrize(
    ("current", "new", "field"),
    [
        ("wrong password!", NEW_PASSWORD, "current_password"),
        (PASSWORD, "short", "password"),
        (PASSWORD, PASSWORD, "new_password"),
    ],
)
def test_a_refused_change_changes_nothing(client, current, new, field):
    token = register(client)
    response = change(client, token, current, new)
    assert response.status_code == 422
    assert field in response.get_json()["error"]["fields"]
    assert client.get("/api/auth/user/", headers=auth(token)).status_code == 200
    assert login(client, PASSWORD).status_code == 200


def test_password_change_needs_a_login(client):
    response = client.post("/api/auth/password/", json={"current_password": "a", "new_password": "b"})
    assert response.status_code == 401


def test_the_whole_account_flow_logs_no_password_token_or_address(app, client, outbox, caplog):
    import logging

    with caplog.at_level(logging.DEBUG):
        session = register(client)
        run_jobs(app)
        verify = token_in(outbox()[-1])
        client.post("/api/auth/verify-email/", json={"token": verify})
        reset = reset_token(app, client, outbox)
        client.post("/api/auth/password-reset/confirm/", json={"token": reset, "password": NEW_PASSWORD})
        fresh = login(client, NEW_PASSWORD).get_json()["token"]
        newest = change(client, fresh, NEW_PASSWORD, "yet another passphrase").get_json()["token"]
        client.get("/api/auth/user/export/", headers=auth(newest))
        client.delete("/api/auth/user/", headers=auth(newest), json={"password": "yet another passphrase"})
    text = "\n".join(r.getMessage() + str(vars(r)) for r in caplog.records)
    assert "/api/auth/password-reset/confirm/" in text  # the flow was logged...
    secrets = [PASSWORD, NEW_PASSWORD, "yet another passphrase", session, verify, reset, fresh, newest]
    for secret in [*secrets, "alice@example.com"]:
        assert secret not in text  # ...without what must stay private
