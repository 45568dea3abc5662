"""Credentials: password change, password reset by e-mail, and e-mail address verification."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import timedelta

from flask import current_app
from sqlalchemy import func, select, update

from bsn.clock import now
from bsn.errors import Conflict, ValidationError
from bsn.extensions import db
from bsn.models import AccountToken, User
from bsn.services import accounts

PASSWORD_RESET = "password_reset"
VERIFY_EMAIL = "verify_email"
TTL_SETTING = {PASSWORD_RESET: "PASSWORD_RESET_TTL", VERIFY_EMAIL: "EMAIL_VERIFICATION_TTL"}


def _invalid() -> ValidationError:
    return ValidationError(
        "The token is invalid, expired or already used.",
        fields={"token": ["Invalid, expired or already used."]},
        code="invalid_account_token",
    )


def _mac(row_id: int, purpose: str, nonce: str) -> str:
    key = current_app.config["SECRET_KEY"].encode()
    digest = hmac.new(key, f"{purpose}:{row_id}:{nonce}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def token_for(row: AccountToken) -> str:
    """The token the e-mail carries, rebuilt from the row: it is never stored, in the database or the job."""
    return f"{row.id}.{_mac(row.id, row.purpose, row.nonce)}"


def _issue(user: User, purpose: str) -> AccountToken:
    """A new token for `purpose`; the older unused ones of the same purpose stop working (the newest e-mail wins)."""
    at = now()
    db.session.execute(
        update(AccountToken)
        .where(AccountToken.user_id == user.id, AccountToken.purpose == purpose, AccountToken.used_at.is_(None))
        .values(used_at=at)
    )
    ttl = timedelta(seconds=current_app.config[TTL_SETTING[purpose]])
    row = AccountToken(
        user_id=user.id,
        purpose=purpose,
        nonce=secrets.token_hex(16),
        email=user.email,
        created_at=at,
        expires_at=at + ttl,
    )
    db.session.add(row)
    return row


def _send_later(row: AccountToken) -> None:
    from workers import queues

    # Only the row id travels through Redis: the job rebuilds the token, so rq-dashboard never shows one.
    queues.enqueue("workers.mail.send_account_email", row.id, queue_name=queues.HIGH, timeout=120)


def _check(raw: str, purpose: str) -> tuple[AccountToken, User]:
    """The live token row and its user, without using the token up; raises ValidationError."""
    ident, _, mac = raw.strip().partition(".")
    if not ident.isdigit() or len(ident) > 18 or not mac:
        raise _invalid()
    row = db.session.get(AccountToken, int(ident))
    if row is None or row.purpose != purpose or not hmac.compare_digest(mac, _mac(row.id, row.purpose, row.nonce)):
        raise _invalid()
    if row.used_at is not None or row.expires_at <= now():
        raise _invalid()
    user = db.session.get(User, row.user_id)
    # A token proves control of the address it was sent to, and of nothing else.
    if user is None or user.is_deleted or user.email.lower() != row.email.lower():
        raise _invalid()
    return row, user


def _use(row: AccountToken) -> None:
    """Mark the token used; of two concurrent uses exactly one gets past this."""
    used = db.session.execute(
        update(AccountToken)
        .where(AccountToken.id == row.id, AccountToken.used_at.is_(None))
        .values(used_at=now())
        .execution_options(synchronize_session=False)
    ).rowcount
    if used != 1:
        db.session.rollback()
        raise _invalid()


# ---- password reset ----


def request_password_reset(email: str) -> None:
    """E-mail a reset link if an active account uses this address; silent either way.

    The answer is the same for unknown addresses, so this endpoint does not tell who has an account.
    """
    user = db.session.scalar(
        select(User).where(func.lower(User.email) == email.strip().lower(), User.deleted_at.is_(None))
    )
    if user is None or user.is_suspended:
        return
    row = _issue(user, PASSWORD_RESET)
    db.session.commit()
    _send_later(row)


def reset_password(raw_token: str, new_password: str) -> None:
    """Set a new password with an e-mailed token; every session of the account ends."""
    row, user = _check(raw_token, PASSWORD_RESET)
    # Checked before the token is used up: a weak password leaves the link working for another try.
    accounts.check_password_rules(new_password, user.username, user.email)
    _use(row)
    user.password_hash = accounts.hash_password(new_password)
    # Following the link proves the address too.
    user.email_verified_at = user.email_verified_at or now()
    db.session.commit()
    accounts.account_changed(user)
    accounts.revoke_all_tokens(user)


def change_password(user: User, current_password: str, new_password: str) -> str:
    """Change the password knowing the current one; ends every session and returns a fresh token for the caller."""
    if not accounts.password_matches(user, current_password):
        raise ValidationError(
            "The current password is wrong.", fields={"current_password": ["Wrong password."]}, code="wrong_password"
        )
    if new_password == current_password:
        raise ValidationError(fields={"new_password": ["Must differ from the current password."]})
    accounts.check_password_rules(new_password, user.username, user.email)
    user.password_hash = accounts.hash_password(new_password)
    db.session.commit()
    # Someone who learned the old password is logged out everywhere; this client carries on with a new token.
    accounts.revoke_all_tokens(user)
    return accounts.issue_token(user)


# ---- e-mail verification ----


def send_verification(user: User) -> None:
    if user.email_verified_at is not None:
        raise Conflict("The e-mail address is already verified.", code="already_verified")
    row = _issue(user, VERIFY_EMAIL)
    db.session.commit()
    _send_later(row)


def verify_email(raw_token: str) -> User:
    row, user = _check(raw_token, VERIFY_EMAIL)
    _use(row)
    user.email_verified_at = user.email_verified_at or now()
    db.session.commit()
    accounts.account_changed(user)
    return user


def account_email(token_id: int):
    """The e-mail for a queued account token, or None when it no longer applies (used, expired, address changed)."""
    from bsn.services import mail

    row = db.session.get(AccountToken, token_id)
    if row is None or row.used_at is not None or row.expires_at <= now():
        return None
    user = db.session.get(User, row.user_id)
    if user is None or user.is_deleted or user.email.lower() != row.email.lower():
        return None
    ttl = int((row.expires_at - row.created_at).total_seconds())
    build = mail.password_reset if row.purpose == PASSWORD_RESET else mail.verify_email
    return build(row.email, user.username, token_for(row), ttl)
