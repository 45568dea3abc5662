"""Presence: a user is online while any of their socket connections is alive, on any process.

Each connection is a member of `presence:conns:<user>` scored by its last refresh; every process
refreshes its own connections every PRESENCE_REFRESH_INTERVAL, and `presence:online` holds each
user's freshest score. A connection whose process died stops being refreshed: the sweep drops it
after PRESENCE_STALE_AFTER and announces the user offline when it was their last one.

Presence is shown only to the people one talks with (shares a conversation with), not to everyone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from flask import current_app
from sqlalchemy import select

from bsn import realtime
from bsn.actors import Actor
from bsn.extensions import db, redis_store
from bsn.models import ConversationMember

log = logging.getLogger(__name__)

NAMESPACE = "/presence"
CONNS = "presence:conns:{}"
ONLINE = "presence:online"
LAST_SEEN = "presence:last_seen"


def _stale_before(now: float) -> float:
    return now - current_app.config["PRESENCE_STALE_AFTER"]


# Each change of a user's connections is one script, so that no interleaving of processes can lose an
# announcement or leave a connected user out of `presence:online`. (A connect on one process between
# another's "no connection left" and its removal from the online set used to do both.)
# KEYS: conns, online, last_seen. Leaves the user offline when no live connection is left and returns the
# last score the user was online with, or false when nothing changed.
_GO_OFFLINE = """
if redis.call('ZCOUNT', KEYS[1], ARGV[1], '+inf') > 0 then return false end
local last = redis.call('ZSCORE', KEYS[2], ARGV[2])
if not last then return false end
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('HSET', KEYS[3], ARGV[2], string.format('%.3f', tonumber(last)))
return last
"""
# ARGV: stale_before, user id, connection, now. Returns 1 when the user was offline before.
_CONNECT = """
local was_online = redis.call('ZCOUNT', KEYS[1], ARGV[1], '+inf') > 0
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[3])
redis.call('ZADD', KEYS[2], 'GT', ARGV[4], ARGV[2])
if was_online then return 0 end
return 1
"""
# ARGV: stale_before, user id, connection.
_DISCONNECT = "redis.call('ZREM', KEYS[1], ARGV[3])" + _GO_OFFLINE
# ARGV: stale_before, user id. Connections no process refreshed since stale_before are dropped.
_SWEEP_ONE = "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])" + _GO_OFFLINE


def _keys(user_id: int) -> list[str]:
    return [CONNS.format(user_id), ONLINE, LAST_SEEN]


def connected(user_id: int, connection: str) -> None:
    """Record a new connection; the first live one makes the user online."""
    now = time.time()
    came_online = redis_store.script(_CONNECT)(keys=_keys(user_id), args=[_stale_before(now), user_id, connection, now])
    if came_online:
        announce(user_id, True, now)


def disconnected(user_id: int, connection: str) -> None:
    """Drop a connection; when it was the user's last live one, they go offline now."""
    last = redis_store.script(_DISCONNECT)(keys=_keys(user_id), args=[_stale_before(time.time()), user_id, connection])
    if last is not None:
        announce(user_id, False, float(last))


# Users renewed per pipeline. Building a pipeline's commands is Python work that nothing else of a gevent web
# process runs beside (some 25 µs a user); its round trip lets the rest run. One pipeline for 200 users held every
# socket event back for 4-6 ms every PRESENCE_REFRESH_INTERVAL; a slice holds them about 1 ms.
REFRESH_SLICE = 40


def refresh(connections: dict[int, set[str]], alive: Callable[[str], bool] = lambda connection: True) -> None:
    """Renew this process's connections (called every PRESENCE_REFRESH_INTERVAL), a slice of users at a time.

    Each slice renews only the connections `alive` still vouches for when it is built: one that closed during an
    earlier slice's round trip has been removed (and its user maybe announced offline), and must not come back.
    """
    now = time.time()
    users = list(connections.items())
    for start in range(0, len(users), REFRESH_SLICE):
        pipe = redis_store.client.pipeline()
        for user_id, members in users[start : start + REFRESH_SLICE]:
            live = [connection for connection in members if alive(connection)]
            if live:
                pipe.zadd(CONNS.format(user_id), dict.fromkeys(live, now))
                pipe.zadd(ONLINE, {str(user_id): now}, gt=True)
        if pipe.command_stack:
            pipe.execute()


def sweep() -> int:
    """Drop connections no process has refreshed lately; announce users left without any. Returns how many."""
    stale = _stale_before(time.time())
    went_offline = 0
    for raw in redis_store.client.zrangebyscore(ONLINE, "-inf", f"({stale}"):
        user_id = int(raw)
        last = redis_store.script(_SWEEP_ONE)(keys=_keys(user_id), args=[stale, user_id])
        if last is not None:
            announce(user_id, False, float(last))
            went_offline += 1
    return went_offline


def online_among(user_ids: list[int]) -> set[int]:
    """Which of these users have a live connection now."""
    if not user_ids:
        return set()
    stale = _stale_before(time.time())
    scores = redis_store.client.zmscore(ONLINE, [str(uid) for uid in user_ids])
    return {uid for uid, score in zip(user_ids, scores, strict=True) if score is not None and score >= stale}


def contacts(user_id: int) -> set[int]:
    """The users who may see this user's presence: everyone who shares a conversation with them."""
    mine = select(ConversationMember.conversation_id).where(ConversationMember.user_id == user_id)
    rows = db.session.scalars(
        select(ConversationMember.user_id).where(ConversationMember.conversation_id.in_(mine)).distinct()
    )
    return {uid for uid in rows if uid != user_id}


def announce(user_id: int, online: bool, at: float) -> None:
    payload = {"user_id": user_id, "online": online, "last_seen": None if online else _iso(at)}
    viewers = sorted(contacts(user_id))
    if viewers:
        # One publish for all the contacts' rooms, not one each.
        realtime.emit("presence", payload, NAMESPACE, [realtime.user_room(viewer) for viewer in viewers])


def query(viewer: Actor, user_ids: list[int]) -> list[dict]:
    """Presence of those of `user_ids` the viewer may see (the others are left out)."""
    visible = contacts(viewer.id) | {viewer.id}
    wanted = [uid for uid in dict.fromkeys(user_ids) if uid in visible]
    if not wanted:
        return []
    client = redis_store.client
    stale = _stale_before(time.time())
    pipe = client.pipeline(transaction=False)
    pipe.zmscore(ONLINE, [str(uid) for uid in wanted])
    pipe.hmget(LAST_SEEN, [str(uid) for uid in wanted])
    scores, seen = pipe.execute()
    return [
        {
            "user_id": uid,
            "online": score is not None and score >= stale,
            "last_seen": None if score is not None and score >= stale else (_iso(float(last)) if last else None),
        }
        for uid, score, last in zip(wanted, scores, seen, strict=True)
    ]


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + "Z"
