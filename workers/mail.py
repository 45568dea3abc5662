"""E-mail jobs: account e-mails (reset, verification) and the periodic notification digests."""

from __future__ import annotations

import logging
import smtplib
from datetime import timedelta

from rq_scheduler import Scheduler

from bsn.extensions import db, redis_store
from bsn.services import credentials, mail, notifications
from workers import queues

log = logging.getLogger(__name__)

# An SMTP server that is down stays down for a while: tries spaced 1, 2, 4, ... 32 minutes apart span an hour.
MAX_ATTEMPTS = 7
FIRST_RETRY = timedelta(minutes=1)


def send_account_email(token_id: int, attempt: int = 1) -> str:
    """Send the e-mail of one account token; a failed send is tried again later, through rq-scheduler."""
    message = credentials.account_email(token_id)
    db.session.remove()  # no transaction held open during a slow SMTP conversation
    if message is None:
        return "no longer applies"  # used, expired or superseded by a newer one
    try:
        mail.deliver(message)
    except (OSError, smtplib.SMTPException) as exc:
        if attempt >= MAX_ATTEMPTS:
            raise  # the job fails and stays in the failed registry, where rq-dashboard can requeue it
        delay = FIRST_RETRY * 2 ** (attempt - 1)
        Scheduler(queue_name=queues.HIGH, connection=redis_store.client).enqueue_in(
            delay, send_account_email, token_id, attempt + 1, timeout=120
        )
        log.warning("account e-mail %s not sent (%s); try %d in %s", token_id, type(exc).__name__, attempt + 1, delay)
        return f"retry {attempt + 1} in {delay}"
    return "sent"


def send_digests() -> dict:
    """One digest per user with new notifications of the kinds they chose; a failed send is tried next run."""
    sent = failed = 0
    after = 0
    while True:
        users = notifications.pending_digests(after)
        if not users:
            break
        for user_id, _kinds in users:
            after = user_id
            message, up_to = notifications.build_digest(user_id)
            db.session.rollback()  # end the read transaction before talking to SMTP
            if message is None:
                continue
            try:
                mail.deliver(message)
            except Exception:
                # The cursor stays: the same notifications go in the next digest.
                failed += 1
                log.exception("digest for user %s not sent", user_id)
                continue
            notifications.digest_sent(user_id, up_to)
            sent += 1
    if failed:
        raise RuntimeError(f"{failed} digest(s) not sent ({sent} sent); they are retried next run")
    return {"sent": sent}
