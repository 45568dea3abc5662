"""E-mail delivery: the SMTP backend against a real SMTP conversation, retries, and notification digests."""

from __future__ import annotations

import email
import os
import socketserver
import threading
from datetime import UTC, datetime, timedelta

import pytest
from rq_scheduler import Scheduler

from bsn.extensions import db, redis_store
from bsn.models import Notification, User
from bsn.services import mail
from tests.conftest import auth
from tests.helpers import run_jobs
from workers import mail as mail_jobs
from workers import queues


class _SMTPHandler(socketserver.StreamRequestHandler):
    """Just enough of RFC 5321 for smtplib: EHLO, MAIL, RCPT, DATA, QUIT."""

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self) -> None:
        self.reply("220 test ESMTP")
        envelope: dict = {"rcpt": []}
        while True:
            line = self.rfile.readline().decode().rstrip("\r\n")
            verb = line[:4].upper()
            if verb in ("EHLO", "HELO"):
                self.reply("250 test")
            elif verb == "MAIL":
                envelope["from"] = line
                self.reply("250 OK")
            elif verb == "RCPT":
                envelope["rcpt"].append(line)
                self.reply("250 OK")
            elif verb == "DATA":
                self.reply("354 go on")
                data = b""
                while (chunk := self.rfile.readline()) != b".\r\n":
                    data += chunk
                self.server.received.append((envelope, data))
                self.reply("250 queued")
            elif verb == "QUIT" or not line:
                self.reply("221 bye")
                return
            else:
                self.reply("250 OK")


@pytest.fixture
def smtp_server(app, monkeypatch):
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _SMTPHandler)
    server.daemon_threads = True
    server.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setitem(app.config, "MAIL_BACKEND", "smtp")
    monkeypatch.setitem(app.config, "MAIL_SMTP_HOST", "127.0.0.1")
    monkeypatch.setitem(app.config, "MAIL_SMTP_PORT", server.server_address[1])
    monkeypatch.setitem(app.config, "MAIL_SMTP_STARTTLS", False)
    yield server
    server.shutdown()
    server.server_close()


def test_the_smtp_backend_delivers_a_message(ctx, smtp_server):
    mail.deliver(mail.Mail("bob@example.com", "Hello", "Body text"))
    [(envelope, data)] = smtp_server.received
    assert "bob@example.com" in envelope["rcpt"][0]
    message = email.message_from_bytes(data)
    assert message["Subject"] == "Hello" and message["From"] == ctx.config["MAIL_FROM"]
    assert message.get_payload(decode=True).decode().strip() == "Body text"


def test_a_failed_send_is_tried_again_later_and_nothing_is_lost(app, client, ctx, monkeypatch, smtp_server):
    port = smtp_server.server_address[1]
    monkeypatch.setitem(app.config, "MAIL_SMTP_PORT", 1)  # nothing listens there: connection refused
    client.post(
        "/api/auth/register/",
        json={"username": "alice", "email": "alice@example.com", "password": "correct horse battery"},
    )
    run_jobs(app)
    scheduler = Scheduler(queue_name=queues.HIGH, connection=redis_store.client)
    [(retry, at)] = scheduler.get_jobs(with_times=True)
    assert retry.func_name == "workers.mail.send_account_email" and retry.args[1] == 2
    assert timedelta(seconds=50) < at - datetime.now(UTC).replace(tzinfo=None) <= mail_jobs.FIRST_RETRY
    monkeypatch.setitem(app.config, "MAIL_SMTP_PORT", port)
    scheduler.enqueue_job(retry)  # what rq-scheduler does when the time comes
    run_jobs(app)
    [(envelope, _)] = smtp_server.received
    assert "alice@example.com" in envelope["rcpt"][0]


def test_the_last_try_fails_the_job_for_rq_dashboard(app, ctx, monkeypatch):
    monkeypatch.setattr(mail_jobs.credentials, "account_email", lambda _id: mail.Mail("a@example.com", "s", "b"))
    monkeypatch.setitem(app.config, "MAIL_BACKEND", "smtp")
    monkeypatch.setitem(app.config, "MAIL_SMTP_HOST", "127.0.0.1")
    monkeypatch.setitem(app.config, "MAIL_SMTP_PORT", 1)
    with pytest.raises(ConnectionRefusedError):
        mail_jobs.send_account_email(1, attempt=mail_jobs.MAX_ATTEMPTS)


def test_an_unknown_backend_fails_loudly(ctx, monkeypatch):
    monkeypatch.setitem(ctx.config, "MAIL_BACKEND", "pigeon")
    with pytest.raises(RuntimeError, match="MAIL_BACKEND"):
        mail.deliver(mail.Mail("bob@example.com", "Hello", "Body"))


def test_the_console_backend_prints_to_stdout_not_the_log(ctx, monkeypatch, capsys, caplog):
    monkeypatch.setitem(ctx.config, "MAIL_BACKEND", "console")
    mail.deliver(mail.Mail("bob@example.com", "Hello", "secret link"))
    assert "secret link" in capsys.readouterr().out
    assert "bob@example.com" not in caplog.text and "secret link" not in caplog.text


# ---- digests ----


@pytest.fixture
def files(app, tmp_path, monkeypatch):
    monkeypatch.setitem(app.config, "MAIL_BACKEND", "file")
    monkeypatch.setitem(app.config, "MAIL_FILE_DIR", str(tmp_path))

    def read():
        names = sorted(n for n in os.listdir(tmp_path) if not n.startswith("."))
        return [email.message_from_bytes((tmp_path / n).read_bytes()) for n in names]

    return read


def verified(ctx, user_id):
    from bsn.clock import now

    db.session.get(User, user_id).email_verified_at = now()
    db.session.commit()


def body(message) -> str:
    return message.get_payload(decode=True).decode()


def test_a_digest_gathers_the_chosen_kinds_once_and_the_next_one_starts_after_it(client, ctx, make_user, files):
    alice_id, alice = make_user("alice")
    _, bob = make_user("bob")
    verified(ctx, alice_id)
    prefs = client.patch("/api/notifications/email-preferences/", headers=auth(alice), json={"like": True})
    assert prefs.status_code == 200 and prefs.get_json()["like"] is True and prefs.get_json()["follow"] is False
    posts = [
        client.post("/api/posts/", headers=auth(alice), json={"body": f"post {i}"}).get_json()["id"] for i in (1, 2)
    ]
    for post in posts:
        client.post(f"/api/posts/{post}/like/", headers=auth(bob))
    client.post(f"/api/users/{alice_id}/follow/", headers=auth(bob))  # a kind alice did not choose

    assert mail_jobs.send_digests() == {"sent": 1}
    [message] = files()
    assert message["To"] == "alice@example.com" and message["Subject"] == "2 new notifications on BSN"
    assert body(message).count("@bob liked your post") == 2 and "followed" not in body(message)

    assert mail_jobs.send_digests() == {"sent": 0}
    client.delete(f"/api/posts/{posts[0]}/like/", headers=auth(bob))
    client.post(f"/api/posts/{posts[0]}/like/", headers=auth(bob))
    assert mail_jobs.send_digests() == {"sent": 1}
    assert files()[-1]["Subject"] == "1 new notification on BSN"


def test_no_digest_to_an_unverified_address_or_of_notifications_already_read(client, ctx, make_user, files):
    alice_id, alice = make_user("alice")
    _, bob = make_user("bob")
    client.patch("/api/notifications/email-preferences/", headers=auth(alice), json={"follow": True})
    client.post(f"/api/users/{alice_id}/follow/", headers=auth(bob))
    assert mail_jobs.send_digests() == {"sent": 0}  # not verified
    verified(ctx, alice_id)
    client.post("/api/notifications/read/", headers=auth(alice), json={})
    assert mail_jobs.send_digests() == {"sent": 0}  # read in the app already
    assert files() == []


def test_a_failed_digest_keeps_its_notifications_for_the_next_run(app, client, ctx, make_user, files, monkeypatch):
    alice_id, alice = make_user("alice")
    _, bob = make_user("bob")
    verified(ctx, alice_id)
    client.patch("/api/notifications/email-preferences/", headers=auth(alice), json={"follow": True})
    client.post(f"/api/users/{alice_id}/follow/", headers=auth(bob))
    monkeypatch.setitem(app.config, "MAIL_BACKEND", "pigeon")
    with pytest.raises(RuntimeError, match="1 digest"):
        mail_jobs.send_digests()
    monkeypatch.setitem(app.config, "MAIL_BACKEND", "file")
    assert mail_jobs.send_digests() == {"sent": 1}
    assert "@bob followed you" in body(files()[0])


def test_a_digest_counts_what_it_does_not_list(client, ctx, make_user, files, monkeypatch):
    from bsn.services import notifications

    monkeypatch.setattr(notifications, "DIGEST_LINES", 2)
    alice_id, _ = make_user("alice")
    verified(ctx, alice_id)
    notifications.set_email_preferences(db.session.get(User, alice_id), {"mention": True})
    for _ in range(5):
        notifications.notify(alice_id, "mention")
    db.session.commit()
    assert db.session.query(Notification).count() == 5
    mail_jobs.send_digests()
    assert "and 3 more" in body(files()[0])


def test_email_preferences_refuse_unknown_kinds(client, make_user):
    _, alice = make_user("alice")
    response = client.patch("/api/notifications/email-preferences/", headers=auth(alice), json={"telepathy": True})
    assert response.status_code == 422
