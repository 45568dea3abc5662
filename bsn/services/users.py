"""People: profiles with counts, search, follows, blocks, mutes."""

from __future__ import annotations

import functools
import json

from sqlalchemy import Integer, bindparam, delete, exists, func, literal, or_, select, tuple_
from sqlalchemy.exc import IntegrityError

from bsn import cache, realtime
from bsn.actors import Actor
from bsn.clock import isoformat
from bsn.dbtools import insert_ignore, read_only
from bsn.errors import Forbidden, NotFound, ValidationError
from bsn.extensions import db
from bsn.models import Block, Follow, Mute, Post, User
from bsn.services import notifications
from bsn.services.accounts import user_json


def blocked_between(a: int, b: int) -> bool:
    """True when either has blocked the other."""
    return bool(
        db.session.scalar(
            select(
                exists().where(
                    or_(
                        (Block.blocker_id == a) & (Block.blocked_id == b),
                        (Block.blocker_id == b) & (Block.blocked_id == a),
                    )
                )
            )
        )
    )


def _visible_user(viewer: Actor, user_id: int) -> User:
    user = db.session.get(User, user_id)
    # Someone who blocked the viewer does not exist for them.
    if user is None or user.is_suspended or (user_id != viewer.id and _blocked_by(user_id, viewer.id)):
        raise NotFound("No such user.")
    return user


def _blocked_by(blocker: int, blocked: int) -> bool:
    return bool(db.session.scalar(select(exists().where(Block.blocker_id == blocker, Block.blocked_id == blocked))))


def profile(viewer: Actor, user_id: int) -> bytes:
    """A profile with follower, following and post counts, as the JSON body of the answer.

    Cached in two parts: what everyone sees (the user and the counts, under the global and the user's
    generations) and the viewer's relations (whom they follow and mute, who blocks them, under the global
    and the viewer's generations), so a hit costs one Redis round trip whoever asks. Without the first part,
    one statement answers (and fills it); with the first part alone, one statement fills the relations.
    """
    own = user_id == viewer.id
    shared = cache.Entry("cache:profile:", "12" if own else "13", f":{user_id}")
    mine = cache.Entry("cache:relations:", "12", f":{viewer.id}")
    got = cache.read((viewer.id,) if own else (viewer.id, user_id), [shared, mine])
    cached, relations = got[1] if got else (None, None)
    if cached is not None:
        if relations is not None:
            relations = json.loads(relations)
        else:
            relations, stored = _relations(viewer.id)
            if stored is not None:
                cache.store({mine.key(got[0]): stored})
        if relations is not None:
            if not own and user_id in relations["blocked_by"]:
                raise NotFound("No such user.")
            return _with_relations(cached, user_id in relations["follows"], user_id in relations["mutes"])
    rows = read_only(_profile_statement(), {"user_id": user_id, "viewer_id": viewer.id})
    row = rows[0] if rows else None
    # Someone who blocked the viewer does not exist for them.
    if row is None or row.suspended_at is not None or (not own and row.blocked):
        raise NotFound("No such user.")
    body = _json(
        {
            "id": row.id,
            "username": row.username,
            "display_name": row.display_name,
            "avatar_url": row.avatar_url,
            "bio": row.bio,
            "created_at": isoformat(row.created_at),
            "followers_count": row.followers,
            "following_count": row.following,
            "posts_count": row.posts,
        }
    )
    if got is not None:
        cache.store({shared.key(got[0]): body})
    return _with_relations(body, bool(row.followed), bool(row.muted))


# Statements built once, with bound parameters: building them anew cost more than running them.
USER_ID, VIEWER_ID = bindparam("user_id", type_=Integer), bindparam("viewer_id", type_=Integer)


@functools.cache
def _profile_statement():
    def count(where):
        return select(func.count()).where(where).scalar_subquery()

    return select(
        User.id,
        User.username,
        User.display_name,
        User.avatar_url,
        User.bio,
        User.created_at,
        User.suspended_at,
        count(Follow.followee_id == USER_ID).label("followers"),
        count(Follow.follower_id == USER_ID).label("following"),
        count(Post.author_id == USER_ID).label("posts"),
        exists().where(Follow.follower_id == VIEWER_ID, Follow.followee_id == USER_ID).label("followed"),
        exists().where(Mute.muter_id == VIEWER_ID, Mute.muted_id == USER_ID).label("muted"),
        exists().where(Block.blocker_id == USER_ID, Block.blocked_id == VIEWER_ID).label("blocked"),
    ).where(User.id == USER_ID)


# A viewer's relations are cached as one value read with every profile; past this many, they are not.
RELATIONS_CACHE_MAX = 2000


@functools.cache
def _relations_statement():
    return (
        select(literal("follows"), Follow.followee_id)
        .where(Follow.follower_id == VIEWER_ID)
        .union_all(
            select(literal("mutes"), Mute.muted_id).where(Mute.muter_id == VIEWER_ID),
            select(literal("blocked_by"), Block.blocker_id).where(Block.blocked_id == VIEWER_ID),
        )
        .limit(RELATIONS_CACHE_MAX + 1)
    )


def _relations(viewer_id: int) -> tuple[dict | None, bytes | None]:
    """Whom the viewer follows and mutes and who blocks them, and that as JSON to cache (None: too many)."""
    rows = read_only(_relations_statement(), {"viewer_id": viewer_id})
    if len(rows) > RELATIONS_CACHE_MAX:
        return None, None
    relations: dict = {"follows": [], "mutes": [], "blocked_by": []}
    for kind, other in rows:
        relations[kind].append(other)
    return relations, _json(relations)


def _json(value) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _with_relations(body: bytes, followed: bool, muted: bool) -> bytes:
    tail = f',"followed_by_me":{"true" if followed else "false"},"muted_by_me":{"true" if muted else "false"}}}'
    return body[:-1] + tail.encode()


def search(viewer: Actor, q: str, limit: int) -> list[dict]:
    """Prefix search on username and display name, case-insensitive."""
    prefix = q.strip().lower().replace("\\", "").replace("%", "").replace("_", "\\_")
    if not prefix:
        raise ValidationError(fields={"q": ["Type at least one character."]})
    pattern = prefix + "%"
    blocked_me = select(Block.blocker_id).where(Block.blocked_id == viewer.id)
    rows = db.session.scalars(
        select(User)
        .where(
            or_(
                func.lower(User.username).like(pattern, escape="\\"),
                func.lower(User.display_name).like(pattern, escape="\\"),
            ),
            User.suspended_at.is_(None),
            User.deleted_at.is_(None),
            User.id.not_in(blocked_me),
        )
        .order_by(func.lower(User.username))
        .limit(limit)
    )
    return [user_json(u) for u in rows]


def follow(follower: Actor, user_id: int) -> dict:
    """Idempotent: following twice is one follow."""
    if user_id == follower.id:
        raise ValidationError("You cannot follow yourself.", fields={"user_id": ["Must be another user."]})
    _visible_user(follower, user_id)
    if blocked_between(follower.id, user_id):
        raise Forbidden("You cannot follow this user.", code="blocked")
    added = insert_ignore(
        Follow, [{"follower_id": follower.id, "followee_id": user_id}], ["follower_id", "followee_id"]
    )
    cache.users_changed(db.session, follower.id, user_id)
    if added:
        notifications.notify(user_id, "follow", follower.id)
    db.session.commit()
    if added:
        realtime.emit(
            "user_followed", {"follower": follower.id, "user_id": user_id}, "/feed", realtime.user_room(user_id)
        )
    return {"user_id": user_id, "following": True}


def unfollow(follower: Actor, user_id: int) -> dict:
    """Idempotent: unfollowing someone one does not follow changes nothing."""
    if db.session.get(User, user_id) is None:
        raise NotFound("No such user.")
    db.session.execute(delete(Follow).where(Follow.follower_id == follower.id, Follow.followee_id == user_id))
    cache.users_changed(db.session, follower.id, user_id)
    db.session.commit()
    return {"user_id": user_id, "following": False}


def block(blocker: Actor, user_id: int) -> dict:
    """Blocking also ends follows both ways."""
    if user_id == blocker.id:
        raise ValidationError(fields={"user_id": ["Must be another user."]})
    if db.session.get(User, user_id) is None:
        raise NotFound("No such user.")
    try:
        cache.users_changed(db.session, blocker.id, user_id)
        insert_ignore(Block, [{"blocker_id": blocker.id, "blocked_id": user_id}], ["blocker_id", "blocked_id"])
        db.session.execute(
            delete(Follow).where(
                or_(
                    (Follow.follower_id == blocker.id) & (Follow.followee_id == user_id),
                    (Follow.follower_id == user_id) & (Follow.followee_id == blocker.id),
                )
            )
        )
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
    return {"user_id": user_id, "blocked": True}


def unblock(blocker: Actor, user_id: int) -> dict:
    db.session.execute(delete(Block).where(Block.blocker_id == blocker.id, Block.blocked_id == user_id))
    cache.users_changed(db.session, blocker.id, user_id)
    db.session.commit()
    return {"user_id": user_id, "blocked": False}


def mute(muter: Actor, user_id: int) -> dict:
    """Idempotent. The muted user is not told and can still follow, message and see the muter."""
    if user_id == muter.id:
        raise ValidationError(fields={"user_id": ["Must be another user."]})
    _visible_user(muter, user_id)
    insert_ignore(Mute, [{"muter_id": muter.id, "muted_id": user_id}], ["muter_id", "muted_id"])
    cache.users_changed(db.session, muter.id, user_id)
    db.session.commit()
    return {"user_id": user_id, "muted": True}


def unmute(muter: Actor, user_id: int) -> dict:
    if db.session.get(User, user_id) is None:
        raise NotFound("No such user.")
    db.session.execute(delete(Mute).where(Mute.muter_id == muter.id, Mute.muted_id == user_id))
    cache.users_changed(db.session, muter.id, user_id)
    db.session.commit()
    return {"user_id": user_id, "muted": False}


def muted_by(muter_id: int, user_id: int) -> bool:
    return bool(db.session.scalar(select(exists().where(Mute.muter_id == muter_id, Mute.muted_id == user_id))))


def follow_list(viewer: Actor, user_id: int, direction: str, limit: int, after_id: int | None):
    """Followers or following of a user, newest follow first, as user objects (one query)."""
    _visible_user(viewer, user_id)
    if direction == "followers":
        other, mine = Follow.follower_id, Follow.followee_id
    else:
        other, mine = Follow.followee_id, Follow.follower_id
    stmt = select(Follow.id, User).join(User, User.id == other).where(mine == user_id).order_by(Follow.id.desc())
    if after_id is not None:
        stmt = stmt.where(tuple_(Follow.id) < tuple_(after_id))
    rows = db.session.execute(stmt.limit(limit + 1)).all()
    page = rows[:limit]
    return [user_json(u) for _, u in page], (page[-1][0] if len(rows) > limit else None)
