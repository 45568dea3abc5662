"""Who is calling: the bearer token of the current request, resolved once per request.

`current_caller()` costs one Redis round trip (the token cache; when the per-user default rate limit
applies, its hits and the cached account ride along, see `accounts.lookup_token`); `current_user()`
also loads the user row. Suspension revokes every token of the user, so both refuse a suspended
account at once.
"""

from __future__ import annotations

from functools import wraps

from flask import request

from bsn.actors import Caller
from bsn.errors import BSNError, Forbidden, Unauthorized
from bsn.extensions import db
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


def _resolve(rate_hits=None) -> tuple[Caller | None, BSNError | None]:
    token = bearer_token()
    if token is None:
        if request.headers.get("Authorization") and not request.authorization:
            return None, Unauthorized("Use 'Authorization: Bearer <token>'.", code="invalid_token")
        return None, None
    return resolve_token(request.environ, token, rate_hits() if rate_hits else None)


def resolve_token(environ: dict, token: str, rate_hits: tuple | None = None) -> tuple[Caller | None, BSNError | None]:
    """Authenticate the request of `environ` by its bearer token, once: the outcome stays in the environ.

    `rate_hits` (`accounts.RateHit`s; given by the rate limiter, or a fast lane before Flask runs) are hit in
    the same round trip; their counts land under PREHITS, for the rate limiter to use instead of its own hits.
    None: the rate limiter did not ask (it is off, or its own lookup failed and it failed open).
    """
    found = accounts.lookup_token(token, rate_hits or ())
    if found.user_id is None:
        state = None, Unauthorized("The token is invalid, expired or revoked.", code="invalid_token")
    else:
        if rate_hits is not None:
            environ[HITS] = rate_hits
        if rate_hits:
            # None where the lookup could not hit (Redis failed it): the rate limiter hits that one itself.
            counts = found.counts or [None] * len(rate_hits)
            environ[PREHITS] = {
                hit.prefix + str(found.user_id) + hit.suffix: count
                for hit, count in zip(rate_hits, counts, strict=True)
            }
        state = Caller(found.user_id, found.account), None
    environ[_KEY] = state
    return state


# Rate-limit counters that the token lookup of this request was to hit: {Redis key: count after the hit, or None}.
PREHITS = "bsn.auth.prehits"
HITS = "bsn.auth.hits"  # the `accounts.RateHit`s the lookup was asked to make (behind PREHITS)
OWN_HITS = "bsn.auth.own_hits"  # set when the rate limiter hit or tested a counter not in PREHITS


def hits_made_ahead(environ: dict) -> tuple | None:
    """The rate-limit hits of this request when they were all the token lookup's to make: the rate limiter
    used every one and touched no other counter. A fast lane may then make the same hits alone (see
    bsn/fastlane.py); None otherwise, also when the lookup that authenticated was not the rate limiter's
    (its own failed and it failed open): "no hits" is learnt only from a limiter that asked for none."""
    if _KEY not in environ or HITS not in environ or environ.get(OWN_HITS) or environ.get(PREHITS):
        return None
    return environ[HITS]


def _state(rate_hits=None) -> tuple[Caller | None, BSNError | None]:
    state = request.environ.get(_KEY)
    if state is None:
        state = request.environ[_KEY] = _resolve(rate_hits)
    return state


def current_caller_or_none() -> Caller | None:
    return _state()[0]


def caller_hitting(rate_hits) -> Caller | None:
    """`current_caller_or_none()`; if this resolves the token, `rate_hits()` are hit in the same round trip.

    The counts land in the environ under PREHITS, for the rate limiter to use instead of its own hits.
    """
    return _state(rate_hits)[0]


def current_caller() -> Caller:
    caller, error = _state()
    if caller is None:
        raise error or Unauthorized()
    return caller


def current_user() -> User:
    """The caller's user row (one primary-key query, then the session's identity map)."""
    user = db.session.get(User, current_caller().id)
    if user is None:
        raise Unauthorized("The token is invalid, expired or revoked.", code="invalid_token")
    if user.is_suspended:
        raise Forbidden("This account is suspended.", code="account_suspended")
    return user


def resolved_user_id() -> int | None:
    """The caller's id if authentication already ran for this request (for logs; never triggers it)."""
    state = request.environ.get(_KEY)
    return state[0].id if state and state[0] is not None else None


def login_required(view):
    @wraps(view)
    def wrapper(*args, **kwargs):
        current_caller()
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
