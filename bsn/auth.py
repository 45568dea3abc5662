"""Who is calling: the bearer token of the current request, resolved once per request."""

from __future__ import annotations

from functools import wraps

from flask import request

from bsn.errors import BSNError, Forbidden, Unauthorized
from bsn.models import User
from bsn.services import accounts

# Kept in the WSGI environ, which lives exactly as long as the request (an app context may outlive it).
_KEY = "bsn.auth"


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _resolve() -> tuple[User | None, BSNError | None]:
    token = bearer_token()
    if token is None:
        if request.headers.get("Authorization"):
            return None, Unauthorized("Use 'Authorization: Bearer <token>'.", code="invalid_token")
        return None, None
    try:
        return accounts.authenticate(token), None
    except BSNError as exc:
        return None, exc


def _state() -> tuple[User | None, BSNError | None]:
    state = request.environ.get(_KEY)
    if state is None:
        state = request.environ[_KEY] = _resolve()
    return state


def current_user_or_none() -> User | None:
    return _state()[0]


def resolved_user_id() -> int | None:
    """The caller's id if authentication already ran for this request (for logs; never triggers it)."""
    state = request.environ.get(_KEY)
    return state[0].id if state and state[0] is not None else None


def current_user() -> User:
    user, error = _state()
    if user is None:
        raise error or Unauthorized()
    return user


def login_required(view):
    @wraps(view)
    def wrapper(*args, **kwargs):
        current_user()
        return view(*args, **kwargs)

    return wrapper


def role_required(check):
    """`role_required(lambda u: u.is_admin)`: 401 without a user, 403 when the check fails."""

    def decorator(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            if not check(current_user()):
                raise Forbidden()
            return view(*args, **kwargs)

        return wrapper

    return decorator
