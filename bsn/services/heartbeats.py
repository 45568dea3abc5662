"""Live mining sessions in Redis: heartbeats land here in one round trip; the database catches up in batches.

Why: the heartbeat is the most frequent call of all (every 30 s per visible tab), and a committed
database write per heartbeat costs more than the whole HTTP request. So a heartbeat only updates
the session's Redis copy (`mining:live:<user>`, times in epoch microseconds) and marks the session
dirty; `flush()` writes the newest heartbeat of every dirty session to the database, and runs at
the start of every sweep and every HEARTBEAT_FLUSH_INTERVAL.

The accrual rule stays exact because every reader overlays the Redis copy on the database row
(`overlay`). The sweep stays safe because it fixes its instant S before flushing: a heartbeat that
Redis accepts after the flush read its session is no later than that session's deadline, which the
flush has just written, so a session the sweep ends (deadline < S) cannot have been renewed.

If Redis loses its data, sessions fall back to the last flushed heartbeat: a miner loses at most
HEARTBEAT_FLUSH_INTERVAL of accrual, and is never paid for time without a heartbeat.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from flask import current_app
from limits import parse
from sqlalchemy import bindparam, case, update

from bsn.extensions import db, redis_store
from bsn.models import MiningSession
from bsn.models.base import UTCDateTime

log = logging.getLogger(__name__)

LIVE_PREFIX = "mining:live:"
RATE_PREFIX = "mining:heartbeat:rate:"
DIRTY_KEY = "mining:heartbeats:dirty"
FLUSH_BATCH = 2000

# Renew a live session. With a token key, it also authenticates (the token cache's "<user id>:<expiry>"
# value) and so serves the whole heartbeat in one round trip. Keys derived from the user id inside the
# script are fine on a single Redis, which BSN uses for everything; it would not run on Redis Cluster.
# Numbers are written with %.0f: Lua's own formatting would round microsecond timestamps.
_RENEW = """
local now, timeout, now_s = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local uid = ARGV[4]
if KEYS[1] ~= '' then
  local token = redis.call('GET', KEYS[1])
  if not token then return {'auth_miss'} end
  if token == 'revoked' then return {'auth_invalid'} end
  local sep = string.find(token, ':', 1, true)
  if not sep or tonumber(string.sub(token, sep + 1)) <= now_s then return {'auth_invalid'} end
  uid = string.sub(token, 1, sep - 1)
end
local limit, window = tonumber(ARGV[5]), tonumber(ARGV[6])
if limit > 0 then
  local rate_key = ARGV[8] .. uid .. ':' .. string.format('%.0f', math.floor(now_s / window))
  local count = redis.call('INCR', rate_key)
  if count == 1 then redis.call('EXPIRE', rate_key, window) end
  if count > limit then return {'limited', uid, redis.call('TTL', rate_key)} end
end
local live_key = ARGV[7] .. uid
local live = redis.call('HMGET', live_key, 'sid', 'hard', 'exp')
if not live[1] then return {'unknown', uid} end
if tonumber(live[3]) < now then return {'stopped', uid} end
local exp = math.min(now + timeout, tonumber(live[2]))
redis.call('HSET', live_key, 'hb', string.format('%.0f', now), 'exp', string.format('%.0f', exp))
redis.call('EXPIRE', live_key, ARGV[9])
redis.call('ZADD', KEYS[2], string.format('%.0f', now), live[1])
return {'ok', uid, string.format('%.0f', exp)}
"""

# Write the database's view of a live session, keeping a newer heartbeat that Redis already has.
_SEED = """
local sid, hb, hard, timeout = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local current = redis.call('HMGET', KEYS[1], 'sid', 'hb')
if current[1] == sid and tonumber(current[2]) > hb then hb = tonumber(current[2]) end
local exp = math.min(hb + timeout, hard)
redis.call('HSET', KEYS[1], 'sid', sid, 'hb', string.format('%.0f', hb), 'hard', string.format('%.0f', hard),
  'exp', string.format('%.0f', exp))
redis.call('EXPIRE', KEYS[1], ARGV[5])
return string.format('%.0f', exp)
"""

# Forget a session's copy, unless the user has started another one meanwhile.
_FORGET = """
if redis.call('HGET', KEYS[1], 'sid') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# Take up to N dirty sessions with their newest heartbeat; a heartbeat after this re-marks its session.
_TAKE = """
local items = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1, 'WITHSCORES')
for i = 1, #items, 2 do redis.call('ZREM', KEYS[1], items[i]) end
return items
"""


def to_us(at: datetime) -> int:
    return (at - _EPOCH) // timedelta(microseconds=1)


def from_us(value) -> datetime:
    return _EPOCH + timedelta(microseconds=int(float(value)))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Outcome:
    status: str  # ok, stopped, unknown, limited, auth_miss, auth_invalid
    user_id: int | None = None
    expires_at: datetime | None = None
    retry_after: int | None = None


def renew(at: datetime, *, token_key: str = "", user_id: int | None = None, count: bool = True) -> Outcome:
    """Record a heartbeat at `at` in Redis: by token (authenticating too) or for a known user.

    `count=False` skips the HEARTBEAT_RATE_LIMIT check, for a retry within the same request. On gevent
    the renewals of concurrent requests share one pipelined round trip (`redis_store.run_script`).
    """
    config = current_app.config
    rate = parse(config["HEARTBEAT_RATE_LIMIT"])
    timeout = config["HEARTBEAT_TIMEOUT"]
    result = redis_store.run_script(
        redis_store.script(_RENEW),
        keys=[token_key, DIRTY_KEY],
        args=[
            to_us(at),
            timeout * 1_000_000,
            f"{at.timestamp():.6f}",
            "" if user_id is None else str(user_id),
            rate.amount if count else 0,
            rate.get_expiry(),
            LIVE_PREFIX,
            RATE_PREFIX,
            _live_ttl(),
        ],
    )
    status = result[0].decode()
    uid = int(result[1]) if len(result) > 1 else None
    if status == "ok":
        return Outcome(status, uid, expires_at=from_us(result[2].decode()))
    if status == "limited":
        return Outcome(status, uid, retry_after=max(1, int(result[2])))
    return Outcome(status, uid)


def _live_ttl() -> int:
    # Renewed by every heartbeat; a copy that outlives its session is harmless (its deadline has passed).
    return current_app.config["HEARTBEAT_TIMEOUT"] + 3600


def seed(session: MiningSession) -> None:
    """Put a live session's database state into Redis (after start, activity checks, or a lost copy)."""
    redis_store.script(_SEED)(
        keys=[LIVE_PREFIX + str(session.user_id)],
        args=[
            session.id,
            to_us(session.last_heartbeat),
            to_us(session.hard_deadline),
            current_app.config["HEARTBEAT_TIMEOUT"] * 1_000_000,
            _live_ttl(),
        ],
    )


def forget(session: MiningSession) -> None:
    redis_store.script(_FORGET)(keys=[LIVE_PREFIX + str(session.user_id)], args=[session.id])


def overlay(session: MiningSession | None) -> None:
    """Apply a newer heartbeat from Redis to an open session read from the database (in memory)."""
    if session is None or session.ended_at is not None:
        return
    sid, hb = redis_store.client.hmget(LIVE_PREFIX + str(session.user_id), "sid", "hb")
    if sid is None or int(sid) != session.id:
        return
    beat = from_us(hb.decode())
    if beat <= session.last_heartbeat:
        return
    timeout = timedelta(seconds=current_app.config["HEARTBEAT_TIMEOUT"])
    session.last_heartbeat = beat
    session.heartbeat_deadline = beat + timeout
    session.expires_at = min(session.heartbeat_deadline, session.hard_deadline)


def flush() -> int:
    """Write the newest buffered heartbeat of every dirty session to the database; returns how many."""
    timeout = timedelta(seconds=current_app.config["HEARTBEAT_TIMEOUT"])
    renewed_deadline = bindparam("deadline", type_=UTCDateTime())
    statement = (
        update(MiningSession)
        .where(
            MiningSession.id == bindparam("sid"),
            MiningSession.ended_at.is_(None),
            MiningSession.last_heartbeat < bindparam("beat", type_=UTCDateTime()),
        )
        .values(
            last_heartbeat=bindparam("beat", type_=UTCDateTime()),
            heartbeat_deadline=renewed_deadline,
            expires_at=case(
                (MiningSession.hard_deadline < renewed_deadline, MiningSession.hard_deadline), else_=renewed_deadline
            ),
        )
        .execution_options(synchronize_session=False)
    )
    client = redis_store.client
    written = 0
    while True:
        items = redis_store.script(_TAKE)(keys=[DIRTY_KEY], args=[FLUSH_BATCH])
        if not items:
            return written
        batch = [(int(items[i]), int(float(items[i + 1]))) for i in range(0, len(items), 2)]
        params = [{"sid": sid, "beat": from_us(beat), "deadline": from_us(beat) + timeout} for sid, beat in batch]
        try:
            db.session.connection().execute(statement, params)
            db.session.commit()
        except Exception:
            db.session.rollback()
            # Put them back (GT keeps any newer heartbeat that arrived meanwhile): nothing is lost.
            client.zadd(DIRTY_KEY, {str(sid): beat for sid, beat in batch}, gt=True)
            raise
        written += len(batch)
