"""E-mail: the messages BSN sends and the backends that deliver them (SMTP, .eml files, stdout).

Delivery happens only in RQ jobs (workers/mail.py), never inside a request: a slow or failing SMTP server
must not slow a request down, and a failed send is retried by RQ.
"""

from __future__ import annotations

import logging
import os
import smtplib
import sys
import time
import uuid
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import urlencode

from flask import current_app

log = logging.getLogger(__name__)

BACKENDS = ("smtp", "file", "console")


@dataclass(frozen=True)
class Mail:
    to: str
    subject: str
    body: str  # plain text


def build(mail: Mail) -> EmailMessage:
    message = EmailMessage()
    message["From"] = current_app.config["MAIL_FROM"]
    message["To"] = mail.to
    message["Subject"] = mail.subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain="bsn")
    message.set_content(mail.body)
    return message


def deliver(mail: Mail) -> None:
    """Send one message through the configured backend; raises on failure so the job is retried."""
    backend = current_app.config["MAIL_BACKEND"]
    message = build(mail)
    if backend == "smtp":
        _smtp(message)
    elif backend == "file":
        _file(message)
    elif backend == "console":
        # Development only: the body holds links with tokens, so it goes to stdout and never to the log.
        sys.stdout.write(message.as_string() + "\n")
        sys.stdout.flush()
    else:
        raise RuntimeError(f"MAIL_BACKEND must be one of {', '.join(BACKENDS)}, got {backend!r}")
    # The address is personal data: the log says what was sent, not to whom.
    log.info("sent e-mail %r through %s", mail.subject, backend)


def _smtp(message: EmailMessage) -> None:
    config = current_app.config
    with smtplib.SMTP(config["MAIL_SMTP_HOST"], config["MAIL_SMTP_PORT"], timeout=config["MAIL_SMTP_TIMEOUT"]) as smtp:
        if config["MAIL_SMTP_STARTTLS"]:
            smtp.starttls()
        if config["MAIL_SMTP_USER"]:
            smtp.login(config["MAIL_SMTP_USER"], config["MAIL_SMTP_PASSWORD"])
        smtp.send_message(message)


def outbox_dir() -> str:
    return current_app.config["MAIL_FILE_DIR"] or os.path.join(current_app.instance_path, "mail")


def _file(message: EmailMessage) -> None:
    directory = outbox_dir()
    os.makedirs(directory, exist_ok=True)
    name = f"{int(time.time() * 1000)}-{uuid.uuid4().hex[:8]}.eml"
    partial = os.path.join(directory, "." + name)
    # Written aside then renamed, so a reader of the directory never sees half a message.
    with open(partial, "wb") as handle:
        handle.write(message.as_bytes())
    os.replace(partial, os.path.join(directory, name))


def link(path: str, **query: str) -> str:
    base = current_app.config["PUBLIC_URL"].rstrip("/")
    return f"{base}{path}?{urlencode(query)}" if query else f"{base}{path}"


# ---- the messages ----


def password_reset(to: str, username: str, token: str, ttl_seconds: int) -> Mail:
    minutes = max(1, ttl_seconds // 60)
    return Mail(
        to,
        "Reset your BSN password",
        f"Hello {username},\n\n"
        "Someone (hopefully you) asked to reset the password of your BSN account.\n"
        f"Open this link within {minutes} minutes to choose a new one; it works once:\n\n"
        f"{link('/reset-password', token=token)}\n\n"
        f"Or send this token to POST /api/auth/password-reset/confirm/: {token}\n\n"
        "If you did not ask for this, ignore this e-mail: your password stays as it is.\n",
    )


def verify_email(to: str, username: str, token: str, ttl_seconds: int) -> Mail:
    hours = max(1, ttl_seconds // 3600)
    return Mail(
        to,
        "Confirm your e-mail address for BSN",
        f"Hello {username},\n\n"
        f"Open this link within {hours} hours to confirm that this address is yours:\n\n"
        f"{link('/verify-email', token=token)}\n\n"
        f"Or send this token to POST /api/auth/verify-email/: {token}\n",
    )


def digest(to: str, username: str, lines: list[str], more: int) -> Mail:
    count = len(lines) + more
    body = f"Hello {username},\n\nYou have {count} new notification{'s' if count != 1 else ''} on BSN:\n\n"
    body += "".join(f"- {line}\n" for line in lines)
    if more:
        body += f"- and {more} more\n"
    body += (
        f"\nSee them all: {link('/notifications')}\n"
        "Choose which kinds reach you by e-mail with PATCH /api/notifications/email-preferences/.\n"
    )
    return Mail(to, f"{count} new notification{'s' if count != 1 else ''} on BSN", body)
