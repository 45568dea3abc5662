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


def connected(user_id: int, connection: str) -> None:
    """Record a new connection; the first live one makes the user online."""
    now = time.time()
    client = redis_store.client
    was_online = client.zcount(CONNS.format(user_id), _stale_before(now), "+inf") > 0
    pipe = client.pipeline()
    pipe.zadd(CONNS.format(user_id), {connection: now})
    pipe.zadd(ONLINE, {str(user_id): now}, gt=True)
    pipe.execute()
    if not was_online:
        announce(user_id, True, now)


def disconnected(user_id: int, connection: str) -> None:
    """Drop a connection; when it was the user's last live one, they go offline now."""
    now = time.time()
    client = redis_store.client
    client.zrem(CONNS.format(user_id), connection)
    if client.zcount(CONNS.format(user_id), _stale_before(now), "+inf") == 0:
        _offline(user_id, now)


def refresh(connections: dict[int, set[str]]) -> None:
    """Renew this process's connections (called every PRESENCE_REFRESH_INTERVAL)."""
    if not connections:
        return
    now = time.time()
    pipe = redis_store.client.pipeline()
    for user_id, members in connections.items():
        pipe.zadd(CONNS.format(user_id), dict.fromkeys(members, now))
        pipe.zadd(ONLINE, {str(user_id): now}, gt=True)
    pipe.execute()


def sweep() -> int:
    """Drop connections no process has refreshed lately; announce users left without any. Returns how many."""
    now = time.time()
    client = redis_store.client
    went_offline = 0
    for raw in client.zrangebyscore(ONLINE, "-inf", _stale_before(now)):
        user_id = int(raw)
        client.zremrangebyscore(CONNS.format(user_id), "-inf", _stale_before(now))
        if client.zcard(CONNS.format(user_id)) == 0:
            _offline(user_id, now)
            went_offline += 1
    return went_offline


def _offline(user_id: int, now: float) -> None:
    last = redis_store.client.zscore(ONLINE, str(user_id))
    pipe = redis_store.client.pipeline()
    pipe.zrem(ONLINE, str(user_id))
    pipe.hset(LAST_SEEN, str(user_id), f"{last or now:.3f}")
    removed = pipe.execute()[0]
    if removed:
        announce(user_id, False, last or now)


def online_among(user_ids: list[int]) -> set[int]:
    """Which of these users have a live connection now."""
    if not user_ids:
        return set()
    stale = _stale_before(time.time())
    pipe = redis_store.client.pipeline()
    for uid in user_ids:
        pipe.zscore(ONLINE, str(uid))
    return {uid for uid, score in zip(user_ids, pipe.execute(), strict=True) if score is not None and score >= stale}


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
    pipe = client.pipeline()
    for uid in wanted:
        pipe.zscore(ONLINE, str(uid))
    scores = pipe.execute()
    seen = client.hmget(LAST_SEEN, [str(uid) for uid in wanted])
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
