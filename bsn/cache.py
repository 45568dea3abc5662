"""Redis cache of post lists and profiles under generation-versioned keys, invalidated by every committed write.

Generations: `cache:gen` moves after any committed write that changes what a post list or a profile
shows (posts, likes, comments, tags, the users' shown fields); `cache:gen:u:<id>` moves when the follows,
blocks or mutes of user <id> (either end) change. A cached answer's key holds the generations it depends
on, read in the same script that looks the answer up, before the database is asked. A writer moves them
after its commit, so a reader that raced the write can only store its stale answer under a key that no
later reader asks for, and a read that starts after a write has answered sees the write.

Writes are noticed through SQLAlchemy's session events (the unit of work and ORM bulk statements alike),
so code that writes these tables needs no cache call; a bulk write of follows, blocks or mutes moves the
global generation unless the service named the users it touched (`users_changed`). Statements run on a
connection directly (Core, `text()`) are not seen: their callers call `changed`. With Redis down, readers
go to the database and a writer's bump is lost: what it had cached lives at most CACHE_TTL seconds.
Generations start at the clock in microseconds when missing (first use, or evicted), so a generation never
comes back to a value that cached answers were stored under.
"""

from __future__ import annotations

import logging
import time

import redis
from flask import current_app, has_app_context
from sqlalchemy import event, inspect
from sqlalchemy.orm import Session

from bsn.extensions import redis_store

log = logging.getLogger(__name__)

GEN = "cache:gen"
USER_GEN = "cache:gen:u:"

# Writes to these tables change post lists and profiles; follows, blocks and mutes only the two users'.
_GLOBAL_TABLES = frozenset({"posts", "likes", "comments", "post_tags"})
_RELATION_TABLES = {"follows": ("follower_id", "followee_id"), "blocks": ("blocker_id", "blocked_id")}
_RELATION_TABLES["mutes"] = ("muter_id", "muted_id")
_USER_FIELDS = ("username", "display_name", "avatar_url", "bio", "suspended_at", "deleted_at", "created_at")

_PENDING = "bsn.cache.pending"  # in Session.info: {"global": bool, "users": set, "bulk_relation": bool}
_HELD = "bsn.cache.held"

# ARGV: now (µs), n, n generation key suffixes ('' for the global one, ':u:<id>' for a user's), then for
# each cached entry a (prefix, suffix) pair; an entry's key is prefix .. the generations joined by ':' ..
# suffix, where a prefix may name which generations it uses as "<prefix>|<indexes>" (1-based, e.g. "|13").
# Returns the n generations, then each entry's value (nil when absent).
_READ = """
local now, n = ARGV[1], tonumber(ARGV[2])
local gens = {}
for i = 1, n do
  local key = 'cache:gen' .. ARGV[2 + i]
  local g = redis.call('GET', key)
  if not g then
    g = now
    redis.call('SET', key, g)
  end
  gens[i] = g
end
local reply = {}
for i = 1, n do reply[i] = gens[i] end
for i = 3 + n, #ARGV, 3 do
  local used = {}
  for d in string.gmatch(ARGV[i + 1], '%d') do used[#used + 1] = gens[tonumber(d)] end
  reply[#reply + 1] = redis.call('GET', ARGV[i] .. table.concat(used, ':') .. ARGV[i + 2]) or false
end
return reply
"""

# KEYS: generations to move. ARGV[1]: now (µs). Each ends at least at `now` (see the module docstring).
_BUMP = """
for _, key in ipairs(KEYS) do
  local g = redis.call('INCR', key)
  if g < tonumber(ARGV[1]) then redis.call('SET', key, ARGV[1]) end
end
return 0
"""

_STORE = """
for i = 1, #KEYS do redis.call('SET', KEYS[i], ARGV[i + 1], 'EX', ARGV[1]) end
return 0
"""


def _now_us() -> str:
    return str(time.time_ns() // 1000)


def _run(source: str, keys: list, args: list):
    # Batched with the concurrent requests' scripts (on gevent).
    return redis_store.run_script(redis_store.script(source), keys, args)


def enabled() -> bool:
    return current_app.config.get("CACHE_TTL", 0) > 0


class Entry:
    """A cached value: key = prefix + the generations it depends on + suffix."""

    def __init__(self, prefix: str, uses: str, suffix: str) -> None:
        self.prefix, self.uses, self.suffix = prefix, uses, suffix

    def key(self, gens: list[str]) -> str:
        return self.prefix + ":".join(gens[int(d) - 1] for d in self.uses) + self.suffix


def read(user_ids: tuple[int, ...], entries: list[Entry]) -> tuple[list[str], list[bytes | None]] | None:
    """The generations (global, then each user's) and each entry's value, in one round trip; None if Redis fails."""
    if not enabled():
        return None
    suffixes = [""] + [f":u:{uid}" for uid in user_ids]
    args: list = [_now_us(), len(suffixes), *suffixes]
    for entry in entries:
        args += [entry.prefix, entry.uses, entry.suffix]
    try:
        reply = _run(_READ, [], args)
    except redis.RedisError:
        log.warning("cache unavailable; reading from the database")
        return None
    n = len(suffixes)
    return [g.decode() if isinstance(g, bytes) else str(g) for g in reply[:n]], list(reply[n:])


def store(values: dict[str, bytes | str]) -> None:
    if not values:
        return
    try:
        _run(_STORE, list(values), [current_app.config["CACHE_TTL"], *values.values()])
    except redis.RedisError:
        log.warning("cache unavailable; answer not stored")


def changed(session: Session) -> None:
    """This transaction changes what lists or profiles show, in a way the session does not see (Core)."""
    _pending(session)["global"] = True


def users_changed(session: Session, *user_ids: int) -> None:
    """Name the users whose follows, blocks or mutes this transaction changes (instead of a global bump)."""
    _pending(session)["users"].update(user_ids)


def bump(user_ids=(), everything: bool = False) -> None:
    send(([GEN] if everything else []) + [USER_GEN + str(uid) for uid in sorted(set(user_ids))])


def send(keys: list[str]) -> None:
    """Move these generations now."""
    if not keys:
        return
    try:
        if has_app_context():
            _run(_BUMP, keys, [_now_us()])
        else:
            redis_store.script(_BUMP)(keys=keys, args=[_now_us()])
    except (redis.RedisError, RuntimeError):
        # Committed either way; what is cached under the old generations lives at most CACHE_TTL.
        log.error("cache generations %s not moved", keys)


def hold(session: Session) -> None:
    """Keep the generations the next commit moves in the session, for `held` (to send in the caller's pipeline)."""
    session.info[_HELD] = []


def held(session: Session) -> list[str]:
    return session.info.pop(_HELD, None) or []


def bump_in(pipe, keys: list[str]) -> None:
    """Add the move of these generations to a Redis pipeline (EVAL: a pipeline cannot load a lost script)."""
    if keys:
        pipe.eval(_BUMP, len(keys), *keys, _now_us())


# ---- noticing writes ----


def _pending(session: Session) -> dict:
    pending = session.info.get(_PENDING)
    if pending is None:
        pending = session.info[_PENDING] = {"global": False, "users": set(), "bulk_relation": False}
    return pending


@event.listens_for(Session, "after_flush")
def _after_flush(session: Session, _context) -> None:
    for obj in (*session.new, *session.dirty, *session.deleted):
        table = getattr(obj, "__tablename__", None)
        if table in _GLOBAL_TABLES:
            if obj in session.dirty and not session.is_modified(obj, include_collections=False):
                continue
            _pending(session)["global"] = True
        elif table in _RELATION_TABLES:
            _pending(session)["users"].update(getattr(obj, name) for name in _RELATION_TABLES[table])
        elif table == "users":
            if obj in session.dirty:
                attrs = inspect(obj).attrs
                if not any(attrs[name].history.has_changes() for name in _USER_FIELDS):
                    continue
            _pending(session)["global"] = True


@event.listens_for(Session, "do_orm_execute")
def _on_execute(state) -> None:
    if not (state.is_update or state.is_delete or state.is_insert):
        return
    table = getattr(getattr(state.statement, "table", None), "name", None)
    if table in _GLOBAL_TABLES or table == "users":
        _pending(state.session)["global"] = True
    elif table in _RELATION_TABLES:
        _pending(state.session)["bulk_relation"] = True


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    pending = session.info.pop(_PENDING, None)
    if pending is None:
        return
    everything = pending["global"] or (pending["bulk_relation"] and not pending["users"])
    keys = ([GEN] if everything else []) + [USER_GEN + str(uid) for uid in sorted(pending["users"])]
    if _HELD in session.info:
        session.info[_HELD].extend(keys)
    else:
        send(keys)


@event.listens_for(Session, "after_soft_rollback")
def _after_rollback(session: Session, previous_transaction) -> None:
    if previous_transaction.parent is None:
        session.info.pop(_PENDING, None)
