"""Accounts: registration, login, bearer tokens and profiles."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import secrets
from dataclasses import dataclass, field
from datetime import timedelta

import redis
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.exc import IntegrityError

from bsn.actors import Actor
from bsn.clock import isoformat, now
from bsn.errors import Conflict, Forbidden, Unauthorized, ValidationError
from bsn.extensions import db, redis_store
from bsn.models import AuthToken, Role, User

log = logging.getLogger(__name__)

TOKEN_CACHE_PREFIX = "auth:token:"
REVOKED = b"revoked"


def _hasher() -> PasswordHasher:
    hasher = current_app.extensions.get("bsn_hasher")
    if hasher is None:
        hasher = PasswordHasher(
            time_cost=current_app.config["PASSWORD_HASH_TIME_COST"],
            memory_cost=current_app.config["PASSWORD_HASH_MEMORY_KIB"],
        )
        current_app.extensions["bsn_hasher"] = hasher
    return hasher


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def check_password_rules(password: str, username: str, email: str) -> None:
    """Length and a few cheap guards against the most guessable choices; raises ValidationError."""
    problems = []
    minimum = current_app.config["PASSWORD_MIN_LENGTH"]
    if len(password) < minimum:
        problems.append(f"Must be at least {minimum} characters long.")
    if len(set(password)) < 4:
        problems.append("Must use at least 4 different characters.")
    lowered = password.lower()
    if username and username.lower() in lowered:
        problems.append("Must not contain the username.")
    local = email.split("@", 1)[0].lower() if email else ""
    if len(local) >= 3 and local in lowered:
        problems.append("Must not contain the e-mail address.")
    if problems:
        raise ValidationError("The password is too weak.", fields={"password": problems})


def register(username: str, email: str, password: str, role: Role = Role.USER) -> User:
    username, email = username.strip(), email.strip()
    check_password_rules(password, username, email)
    taken = {}
    if db.session.scalar(select(User.id).where(func.lower(User.username) == username.lower())):
        taken["username"] = ["This username is taken."]
    if db.session.scalar(select(User.id).where(func.lower(User.email) == email.lower())):
        taken["email"] = ["An account with this e-mail exists."]
    if taken:
        raise Conflict("The account already exists.", fields=taken, code="account_exists")
    user = User(username=username, email=email, password_hash=hash_password(password), role=role.value)
    db.session.add(user)
    try:
        db.session.commit()
    except IntegrityError:
        # A concurrent registration took the name between the check and the insert.
        db.session.rollback()
        raise Conflict("The account already exists.", code="account_exists") from None
    return user


def login(identifier: str, password: str) -> tuple[str, User]:
    """Check a username or e-mail and password; returns a new bearer token and the user."""
    user = check_credentials(identifier, password)
    return issue_token(user), user


def check_credentials(identifier: str, password: str) -> User:
    """The user with this username or e-mail and password; raises Unauthorized or Forbidden (suspended)."""
    ident = identifier.strip().lower()
    column = User.email if "@" in ident else User.username
    user = db.session.scalar(select(User).where(func.lower(column) == ident))
    hasher = _hasher()
    if user is None:
        # Spend the same time as a real check, so a response time does not tell which accounts exist.
        _dummy_verify(hasher, password)
        raise Unauthorized("Wrong username or password.", code="invalid_credentials")
    try:
        hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        raise Unauthorized("Wrong username or password.", code="invalid_credentials") from None
    if user.is_suspended:
        raise Forbidden("This account is suspended.", code="account_suspended")
    if hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hasher.hash(password)
        db.session.commit()
    return user


def password_matches(user: User, password: str) -> bool:
    try:
        return _hasher().verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _dummy_verify(hasher: PasswordHasher, password: str) -> None:
    dummy = current_app.extensions.get("bsn_dummy_hash")
    if dummy is None:
        dummy = current_app.extensions["bsn_dummy_hash"] = hasher.hash(secrets.token_hex(8))
    with contextlib.suppress(VerificationError):
        hasher.verify(dummy, password)


def _digest(raw_token: str) -> str:
    return hashlib.sha256(raw_token.encode()).hexdigest()


def issue_token(user: User) -> str:
    raw = secrets.token_urlsafe(32)
    ttl = timedelta(seconds=current_app.config["AUTH_TOKEN_TTL"])
    db.session.add(AuthToken(user_id=user.id, token_hash=_digest(raw), expires_at=now() + ttl))
    db.session.commit()
    return raw


def logout(raw_token: str) -> None:
    """Revoke one token at once, on every process: the database row and the shared cache."""
    digest = _digest(raw_token)
    db.session.execute(
        update(AuthToken).where(AuthToken.token_hash == digest, AuthToken.revoked_at.is_(None)).values(revoked_at=now())
    )
    db.session.commit()
    _cache_set(digest, REVOKED, current_app.config["AUTH_CACHE_TTL"], only_if_absent=False)


def revoke_all_tokens(user: User) -> None:
    """End every session of a user (suspension, password change)."""
    digests = db.session.scalars(
        select(AuthToken.token_hash).where(AuthToken.user_id == user.id, AuthToken.revoked_at.is_(None))
    ).all()
    db.session.execute(
        update(AuthToken).where(AuthToken.user_id == user.id, AuthToken.revoked_at.is_(None)).values(revoked_at=now())
    )
    db.session.commit()
    for digest in digests:
        _cache_set(digest, REVOKED, current_app.config["AUTH_CACHE_TTL"], only_if_absent=False)


def _cache_set(digest: str, value: bytes, ttl: int, *, only_if_absent: bool) -> None:
    if ttl <= 0:
        return
    try:
        redis_store.client.set(TOKEN_CACHE_PREFIX + digest, value, ex=ttl, nx=only_if_absent)
    except redis.RedisError:
        log.warning("token cache unavailable; falling back to the database")


def token_cache_key(raw_token: str) -> str:
    return TOKEN_CACHE_PREFIX + _digest(raw_token)


# The token check of an HTTP request in one Redis round trip: the token's cache entry, the cached
# copy of its account (`auth:account:<id>`, so GET /api/auth/user/ needs nothing more), and the hits
# of the caller's per-user rate limits. A hit is an INCRBY of a fixed-window counter, then EXPIRE on
# its first hit, exactly as the `limits` library's own script does, on the key Flask-Limiter would
# use (the user id goes between ARGV prefix and suffix). An invalid token hits nothing: the call is
# then anonymous and limited per address the ordinary way. Keys derived inside the script are fine
# on a single Redis, which BSN uses for everything.
_LOOKUP = """
local token = redis.call('GET', KEYS[1])
if not token then
  if ARGV[4] == '' then return {} end
  -- A fill from the database, in the same script as the lookup it completes: a revocation's tombstone written
  -- since the GET above cannot be, as scripts run alone, so this SET is the fills' usual SET NX.
  token = ARGV[4]
  redis.call('SET', KEYS[1], token, 'EX', ARGV[5])
end
local sep = string.find(token, ':', 1, true)
if not sep or tonumber(string.sub(token, sep + 1)) <= tonumber(ARGV[1]) then return {token} end
local uid = string.sub(token, 1, sep - 1)
if ARGV[6] ~= '' then redis.call('SET', ARGV[2] .. uid, ARGV[6], 'EX', ARGV[7], 'NX') end
local reply = {token, redis.call('GET', ARGV[2] .. uid)}
local cost = tonumber(ARGV[3])
for i = 8, #ARGV, 3 do
  local key = ARGV[i] .. uid .. ARGV[i + 1]
  local count = redis.call('INCRBY', key, cost)
  if count == cost then redis.call('EXPIRE', key, ARGV[i + 2]) end
  reply[#reply + 1] = count
end
return reply
"""


@dataclass(frozen=True)
class RateHit:
    """A fixed-window counter to hit for the token's user: key = prefix + user id + suffix."""

    prefix: str
    suffix: str
    expiry: int
    amount: int  # the limit: a count above it is a breach


@dataclass
class TokenLookup:
    user_id: int | None = None
    account: bytes | None = None  # the account's cached copy, when the cache answered
    counts: list[int] = field(default_factory=list)  # per RateHit, the count after this request's hit


def lookup_token(raw_token: str, rate_hits: tuple[RateHit, ...] = ()) -> TokenLookup:
    """`user_id_for_token`, plus the account copy and the rate-limit hits, in the same round trip.

    A token the cache does not hold (its first use, or the first since AUTH_CACHE_TTL or a Redis restart) is
    read from the database with its account, in one statement, and the same script then stores both and makes
    the hits: a cold call costs one statement and one more round trip, not a second path. `counts` is empty
    only when Redis cannot be used.
    """
    digest = _digest(raw_token)
    current = now()
    key = TOKEN_CACHE_PREFIX + digest
    args = [repr(current.timestamp()), ACCOUNT_CACHE_PREFIX, 1, "", 0, "", 0, *_hit_args(rate_hits)]
    try:
        reply = redis_store.run_script(redis_store.script(_LOOKUP), [key], args)
    except redis.RedisError:
        log.warning("token cache unavailable; falling back to the database")
        return TokenLookup(_token_from_database(digest, current)[0])
    if not reply:
        user_id, fill = _token_from_database(digest, current)
        if fill is None:
            return TokenLookup(user_id)
        args[3:7] = fill
        try:
            reply = redis_store.run_script(redis_store.script(_LOOKUP), [key], args)
        except redis.RedisError:
            log.warning("token cache unavailable; falling back to the database")
            return TokenLookup(user_id)
    cached = reply[0]
    if cached == REVOKED:
        return TokenLookup()
    user_id, _, expires = cached.decode().partition(":")
    if float(expires) <= current.timestamp():
        return TokenLookup()
    return TokenLookup(int(user_id), reply[1], [int(count) for count in reply[2:]])


def _token_from_database(digest: str, current) -> tuple[int | None, list | None]:
    """The live token's user, and the lookup script's fill arguments (token entry, its TTL, the account's copy
    or "", its TTL), or None when there is nothing to store."""
    row = db.session.execute(_TOKEN_AND_ACCOUNT, {"digest": digest}).first()
    if row is None or row.expires_at <= current:
        return None, None
    config = current_app.config
    ttl = min(config["AUTH_CACHE_TTL"], int((row.expires_at - current).total_seconds()))
    if ttl <= 0:
        return row.user_id, None
    # A suspended or deleted account has no copy (its tokens are revoked with it).
    account = "" if row.suspended_at is not None or row.deleted_at is not None else json.dumps(_account(row))
    return row.user_id, [f"{row.user_id}:{row.expires_at.timestamp()}", ttl, account, config["AUTH_CACHE_TTL"]]


def _hit_args(rate_hits: tuple[RateHit, ...]) -> list:
    return [value for hit in rate_hits for value in (hit.prefix, hit.suffix, hit.expiry)]


def user_id_for_token(raw_token: str) -> int | None:
    """The user a live token belongs to, or None. Cached in Redis so most checks skip the database.

    A revocation writes a tombstone that a concurrent cache fill cannot overwrite (fills use NX),
    so a logout is seen by every process at once.
    """
    return lookup_token(raw_token).user_id


PROFILE_FIELDS = ("display_name", "bio", "avatar_url")


def user_json(user: User | None) -> dict | None:
    """The user object of CONTRACT.md, as every answer shows another user."""
    if user is None:
        return None
    return {"id": user.id, "username": user.username, "display_name": user.display_name, "avatar_url": user.avatar_url}


ACCOUNT_CACHE_PREFIX = "auth:account:"
ACCOUNT_CACHE = ACCOUNT_CACHE_PREFIX + "{}"
ACCOUNT_FIELDS = ("id", "username", "email", "display_name", "bio", "avatar_url", "role")


def own_account(actor: Actor) -> dict:
    """The caller's own account as plain data, from a Redis copy that every change of it rewrites.

    Writers overwrite the copy after their commit and readers fill it only where absent (NX), so a
    reader that loaded the row before a change can never put the old version back. The copy usually
    came along with the request's token lookup (same round trip); otherwise it costs one GET.
    """
    cached = getattr(actor, "account", None)
    if cached is None:
        try:
            cached = redis_store.client.get(ACCOUNT_CACHE.format(actor.id))
        except redis.RedisError:
            cached = None
    if cached is not None:
        return json.loads(cached)
    user = db.session.get(User, actor.id)
    if user is None:
        raise Unauthorized("The token is invalid, expired or revoked.", code="invalid_token")
    if user.is_suspended:
        raise Forbidden("This account is suspended.", code="account_suspended")
    return _cache_account(user, only_if_absent=True)


def account_copy(actor: Actor, connection) -> tuple[dict | None, bool]:
    """The caller's account as `own_account` shows it, and whether it was read here.

    From the copy the token lookup brought along, else read on `connection` (one statement, no ORM); None
    for an account that is gone or suspended. One read here should be kept with `keep_account_copy` for the
    caller's next calls, once the caller's transaction has ended: no transaction waits on Redis.
    """
    cached = getattr(actor, "account", None)
    if cached is not None:
        return json.loads(cached), False
    row = connection.execute(_ACCOUNT, {"user_id": actor.id}).first()
    if row is None or row.suspended_at is not None or row.deleted_at is not None:
        return None, False
    return _account(row), True


def keep_account_copy(account: dict) -> None:
    """Store an account `account_copy` read, where there is no copy (a change's rewrite wins)."""
    _store_account(account["id"], account, only_if_absent=True)


_ACCOUNT_COLUMNS = (*ACCOUNT_FIELDS, "email_verified_at", "created_at", "suspended_at", "deleted_at")
_ACCOUNT = select(*(getattr(User, name) for name in _ACCOUNT_COLUMNS)).where(User.id == bindparam("user_id"))
_TOKEN_AND_ACCOUNT = (
    select(AuthToken.user_id, AuthToken.expires_at, *(getattr(User, name) for name in _ACCOUNT_COLUMNS))
    .join(User, User.id == AuthToken.user_id)
    .where(AuthToken.token_hash == bindparam("digest"), AuthToken.revoked_at.is_(None))
)


def _account(user) -> dict:
    """`user`: a User, or a row of its columns (`_ACCOUNT`)."""
    account = {name: getattr(user, name) for name in ACCOUNT_FIELDS}
    account["email_verified"] = user.email_verified_at is not None
    account["created_at"] = isoformat(user.created_at)
    return account


def _cache_account(user: User, *, only_if_absent: bool) -> dict:
    """Rewrite (or, for a suspended user, delete) the account's cached copy after a change.

    Every change of a field of ACCOUNT_FIELDS or of the suspension calls it with only_if_absent=False
    after its commit; fills pass True.
    """
    account = _account(user)
    _store_account(user.id, None if user.is_suspended or user.is_deleted else account, only_if_absent=only_if_absent)
    return account


def _store_account(user_id: int, account: dict | None, *, only_if_absent: bool) -> None:
    key = ACCOUNT_CACHE.format(user_id)
    try:
        if account is None:
            redis_store.client.delete(key)
        else:
            redis_store.client.set(key, json.dumps(account), ex=current_app.config["AUTH_CACHE_TTL"], nx=only_if_absent)
    except redis.RedisError:
        # The change is committed either way; a copy left behind lives at most AUTH_CACHE_TTL.
        log.log(logging.WARNING if only_if_absent else logging.ERROR, "account cache of user %s not updated", user_id)


def account_changed(user: User) -> None:
    """Call after committing any change to what `own_account` shows (verification, deletion)."""
    _cache_account(user, only_if_absent=False)


def update_profile(user: User, changes: dict) -> User:
    for key, value in changes.items():
        if key not in PROFILE_FIELDS:
            raise ValidationError(fields={key: ["This field cannot be changed."]})
        setattr(user, key, value)
    db.session.commit()
    _cache_account(user, only_if_absent=False)
    return user


def set_suspended(actor: User, user: User, suspended: bool) -> User:
    if not actor.is_moderator:
        raise Forbidden()
    user.suspended_at = now() if suspended else None
    db.session.commit()
    _cache_account(user, only_if_absent=False)
    if suspended:
        revoke_all_tokens(user)
    return user
