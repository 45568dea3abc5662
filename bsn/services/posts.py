"""Posts: create, edit, delete, read, lists and the feed (one statement per page), comments, likes.

Bodies are stored exactly as typed and returned as plain JSON strings; clients insert them as text.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Sequence
from datetime import datetime

from flask import current_app
from sqlalchemy import Integer, and_, bindparam, delete, exists, func, insert, or_, select, text, tuple_, update
from sqlalchemy.exc import DataError, IntegrityError

from bsn import cache, groupcommit, realtime
from bsn.actors import Actor
from bsn.clock import isoformat
from bsn.clock import now as clock_now
from bsn.dbtools import end_transaction, insert_ignore, is_sqlite, read_only
from bsn.errors import Forbidden, NotFound, Unauthorized, ValidationError
from bsn.extensions import db
from bsn.groupcommit import GroupCommit
from bsn.models import Block, Comment, Follow, Group, GroupMember, Mute, Post, PostLike, PostTag, User
from bsn.outages import OUTAGES
from bsn.services import moderation, notifications, outbox
from bsn.services.accounts import account_copy, keep_account_copy, user_json
from bsn.services.users import blocked_between

log = logging.getLogger(__name__)

PUBLIC, FOLLOWERS = "public", "followers"
VISIBILITIES = (PUBLIC, FOLLOWERS)


def check_body(body: str) -> str:
    body = body.strip()
    if not body:
        raise ValidationError(fields={"body": ["Must not be empty."]})
    if len(body) > current_app.config["POST_MAX_LENGTH"]:
        raise ValidationError(fields={"body": [f"At most {current_app.config['POST_MAX_LENGTH']} characters."]})
    return body


MENTION = re.compile(r"(?<![\w@])@([A-Za-z0-9_]{3,30})")
HASHTAG = re.compile(r"(?<![\w#])#(\w{1,64})")


def _tags_and_mentions(post_id: int, body: str, actor_id: int, new: bool = False) -> None:
    """Store the post's hashtags and notify the users it mentions (in the caller's transaction)."""
    if not new:
        db.session.execute(delete(PostTag).where(PostTag.post_id == post_id))
    tags = sorted({tag.lower() for tag in HASHTAG.findall(body)})
    for tag in tags:
        db.session.add(PostTag(post_id=post_id, tag=tag))
    names = {name.lower() for name in MENTION.findall(body)}
    if names:
        mentioned = db.session.scalars(select(User.id).where(func.lower(User.username).in_(names)))
        for user_id in mentioned:
            notifications.notify(user_id, "mention", actor_id, {"post_id": post_id})


def create_post(
    author: Actor, body: str, visibility: str = PUBLIC, media: list[str] | None = None, client_id: str | None = None
) -> dict:
    """Store a post and tell the author's followers. A `client_id` the author used before answers the post
    stored the first time (whatever this call's body), so a retry after a lost answer makes no second post."""
    body = check_body(body)
    held = moderation.screen(body) == moderation.HOLD
    at = clock_now()
    values = {"author_id": author.id, "body": body, "visibility": visibility, "media": media or []}
    values.update(like_count=0, comment_count=0, created_at=at, hidden_at=at if held else None, client_id=client_id)
    if not held and not HASHTAG.search(body) and not MENTION.search(body):
        # Nothing else to write: the INSERT alone, stored with the plain posts this process's other callers create
        # meanwhile (a group commit: one commit for them all; a lone post is one INSERT in autocommit).
        author_json, account_read = _plain_author(author)
        end_transaction()  # none of the caller's transaction stays open while its post waits its turn
        try:
            post_id = _plain_posts().submit(values)
        except IntegrityError:
            earlier = _earlier(author, client_id)
            if earlier is None:
                raise
            return earlier
        _keep(account_read)
        return _created(post_id, author_json, values)  # its batch's fan-out job is already enqueued
    # One INSERT ... RETURNING as Core on the session's connection, without the unit of work's bookkeeping
    # for an object nobody reads again; the cache is told, as Core statements are not seen (bsn/cache.py).
    try:
        post_id = db.session.connection().execute(_INSERT, values).scalar_one()
    except IntegrityError:
        db.session.rollback()
        earlier = _earlier(author, client_id)
        if earlier is None:
            raise
        return earlier
    cache.changed(db.session)
    if held:
        moderation.hold_for_review("post", post_id, "auto-moderation: held for review")
    else:
        _tags_and_mentions(post_id, body, author.id, new=True)
    author_json, account_read = _author(author, db.session.connection())
    data = _created(post_id, author_json, values)
    # The cache generations this commit moves go out with the fan-out job, in its round trip.
    cache.hold(db.session)
    try:
        db.session.commit()
    finally:
        moved = cache.held(db.session)
    _keep(account_read)
    if held:
        cache.send(moved)
    else:
        # Popular authors have thousands of followers: the fan-out is a job, not part of the request.
        fan_out_posts_later([(post_id, author.id)], moved)
    return data


# Plain posts stored by one statement at most (a burst of creates on one process, each answered alone).
POST_BATCH = 100


def _plain_posts() -> GroupCommit:
    return groupcommit.for_app("bsn_plain_posts", _store_and_fan_out, POST_BATCH)


def _store_and_fan_out(batch: Sequence[dict]) -> list:
    outcomes = store_plain_posts(batch)
    created = [
        (post_id, values["author_id"])
        for post_id, values in zip(outcomes, batch, strict=True)
        if not isinstance(post_id, BaseException)
    ]
    if created:
        # One job and one cache move for the whole batch, after its commit: enqueueing an RQ job cost about a
        # quarter of a plain post's CPU.
        fan_out_posts_later(created, [cache.GEN])
    return outcomes


def store_plain_posts(batch: Sequence[dict]) -> list:
    """The ids of a batch of plain posts' rows (`_INSERT`'s values), or for a post refused alone its error.

    On PostgreSQL any batch, a lone post too, is one INSERT of every row in autocommit (`_insert_arrays`). On
    SQLite a lone post is one INSERT in autocommit, and a larger batch one transaction that inserts row by row
    (SQLAlchemy's "insertmanyvalues" with sort_by_parameter_order), all or nothing. A batch the database refuses (a
    client_id its author used before) is stored again one post at a time, so that the refusal, an IntegrityError,
    is the outcome of the post it concerns alone (also when the same client_id came twice in the batch).
    """
    postgresql = not is_sqlite()
    if postgresql or len(batch) > 1:
        try:
            if postgresql:
                return _insert_arrays(batch)
            with db.engine.begin() as connection:
                return list(connection.execute(_INSERT_SORTED, list(batch)).scalars())
        except OUTAGES:
            raise  # the database is away: each post alone would fail too
        except (IntegrityError, DataError):
            pass  # a value one post alone brings (a reused client_id): stored again one by one, where it fails alone
        except Exception:  # still stored one by one, but this is no refusal of one post's value: told
            log.warning("a batch of %d plain posts failed; storing each alone", len(batch), exc_info=True)
    outcomes: list = []
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        for values in batch:
            try:
                outcomes.append(connection.execute(_INSERT, values).scalar_one())
            except Exception as refused:  # noqa: BLE001 - this post's own outcome
                outcomes.append(refused)
    return outcomes


def _insert_arrays(batch: Sequence[dict]) -> list[int]:
    """PostgreSQL: the batch as one INSERT ... SELECT FROM unnest(arrays), in autocommit (one statement is all or
    nothing). Its text is the same whatever the batch's size, so psycopg prepares it (a few variants a connection:
    it types an array of ints by their size), and it costs one round trip, where SQLAlchemy's insertmanyvalues
    made a new statement a size and a transaction made three."""
    columns = {name: [values[name] for values in batch] for name in _ARRAY_COLUMNS}
    if any(at.tzinfo is None for at in columns["created_at"]):
        # What UTCDateTime refuses on the ORM's way in; these values bypass it.
        raise ValueError("naive datetime given; use timezone-aware UTC datetimes")
    columns["media"] = [json.dumps(media) for media in columns["media"]]
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        ids = connection.execute(_INSERT_ARRAYS, columns).scalars().all()
    # Rows get their ids from the sequence in the SELECT's order (ORDER BY n), as SQLAlchemy's own
    # sort_by_parameter_order relies on; RETURNING's order is not promised, so the ids are sorted.
    return sorted(ids)


def _plain_author(author: Actor) -> tuple[dict, dict | None]:
    if getattr(author, "account", None) is not None:  # the token lookup's copy: no connection needed
        return _author(author, None)
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        return _author(author, connection)


def _earlier(author: Actor, client_id: str | None) -> dict | None:
    """The post a retried create (same author, same client_id) stored the first time, if that is what this is."""
    if client_id is None:
        return None
    post_id = db.session.scalar(select(Post.id).where(Post.author_id == author.id, Post.client_id == client_id))
    return None if post_id is None else get_post(author, post_id)


def _created(post_id: int, author: dict, values: dict) -> dict:
    """The answer from what is in hand: the values just inserted and the author, nothing read again."""
    return {
        "id": post_id,
        "author": author,
        "body": values["body"],
        "visibility": values["visibility"],
        "media": values["media"],
        "created_at": isoformat(values["created_at"]),
        "edited_at": None,
        "like_count": 0,
        "comment_count": 0,
        "liked_by_me": False,
    }


def _author(author: Actor, connection) -> tuple[dict, dict | None]:
    """The author as lists show them, and their account when it was read here rather than from its copy."""
    account, read_here = account_copy(author, connection)
    if account is None:
        # Suspended or deleted since the token check (both revoke every token).
        raise Unauthorized("The token is invalid, expired or revoked.", code="invalid_token")
    return {key: account[key] for key in AUTHOR_FIELDS}, account if read_here else None


def _keep(account_read: dict | None) -> None:
    # After the transaction, for the author's next posts: no transaction (nor SQLite turn) waits on Redis.
    if account_read is not None:
        keep_account_copy(account_read)


AUTHOR_FIELDS = ("id", "username", "display_name", "avatar_url")
_INSERT = insert(Post.__table__).returning(Post.__table__.c.id)
_INSERT_SORTED = insert(Post.__table__).returning(Post.__table__.c.id, sort_by_parameter_order=True)
# Column, and the PostgreSQL type of its array (the values of a plain post, as create_post makes them).
_ARRAY_TYPES = {
    "author_id": "bigint",
    "body": "text",
    "visibility": "text",
    "media": "text",  # JSON text, cast per row
    "like_count": "integer",
    "comment_count": "integer",
    "created_at": "timestamptz",
    "hidden_at": "timestamptz",
    "client_id": "text",
}
_ARRAY_COLUMNS = tuple(_ARRAY_TYPES)
_INSERT_ARRAYS = text(
    f"INSERT INTO posts ({', '.join(_ARRAY_COLUMNS)}) "
    f"SELECT {', '.join('media::json' if c == 'media' else c for c in _ARRAY_COLUMNS)} "
    f"FROM unnest({', '.join(f'CAST(:{c} AS {t}[])' for c, t in _ARRAY_TYPES.items())}) "
    f"WITH ORDINALITY AS batch({', '.join(_ARRAY_COLUMNS)}, n) ORDER BY n RETURNING id"
)


def fan_out_later(event: str, data: dict, author_id: int, cache_moves: list[str] = ()) -> None:
    """Enqueue the fan-out job and move `cache_moves`, atomically, in the batched round trip of concurrent calls.

    Called after the write's commit: with Redis down, the job waits in the job outbox (bsn/services/outbox.py)
    and the write's answer stands.
    """
    _enqueue_fan_out("workers.posts.fan_out", (event, data, author_id), cache_moves)


def fan_out_posts_later(created: list[tuple[int, int]], cache_moves: list[str] = ()) -> None:
    """`fan_out_later` for posts stored together: one job tells the followers of each (post id, author id)."""
    _enqueue_fan_out("workers.posts.fan_out_posts", ([list(pair) for pair in created],), cache_moves)


def _enqueue_fan_out(job: str, args: tuple, cache_moves) -> None:
    from workers import queues

    outbox.enqueue_after_commit(job, args, queues.HIGH, timeout=600, retries=2, cache_moves=cache_moves)


def fan_out(event: str, data: dict, author_id: int, batch: int = 5000) -> int:
    """Push `event` to every follower of `author_id` on /feed; returns how many were told."""
    told, after = 0, 0
    while True:
        followers = db.session.scalars(
            select(Follow.follower_id)
            .where(Follow.followee_id == author_id, Follow.follower_id > after)
            .order_by(Follow.follower_id)
            .limit(batch)
        ).all()
        if followers:
            # One publish for the whole batch, not one per follower.
            realtime.emit(event, data, "/feed", [realtime.user_room(follower_id) for follower_id in followers])
        told += len(followers)
        if len(followers) < batch:
            return told
        after = followers[-1]


def _can_see(viewer: Actor, post: Post) -> bool:
    if post.author_id == viewer.id:
        return True
    if post.hidden_at is not None:
        return False
    if post.group_id is not None and not _group_readable(viewer, post.group_id):
        return False
    if blocked_between(viewer.id, post.author_id):
        return False
    if post.visibility == PUBLIC:
        return True
    return bool(
        db.session.scalar(select(exists().where(Follow.follower_id == viewer.id, Follow.followee_id == post.author_id)))
    )


def _group_readable(viewer: Actor, group_id: int) -> bool:
    group = db.session.get(Group, group_id)
    if group is None or not group.private:
        return group is not None
    return bool(
        db.session.scalar(
            select(
                exists().where(
                    GroupMember.group_id == group_id, GroupMember.user_id == viewer.id, GroupMember.status == "active"
                )
            )
        )
    )


def _visible_post(viewer: Actor, post_id: int) -> Post:
    post = db.session.get(Post, post_id)
    if post is None or not _can_see(viewer, post):
        raise NotFound("No such post.")
    return post


def _moderated_post(post_id: int) -> Post:
    post = db.session.get(Post, post_id)
    if post is None:
        raise NotFound("No such post.")
    return post


def get_post(viewer: Actor, post_id: int) -> dict:
    post = _visible_post(viewer, post_id)
    liked = db.session.scalar(select(exists().where(PostLike.post_id == post_id, PostLike.user_id == viewer.id)))
    return item(post, db.session.get(User, post.author_id), liked=bool(liked))


def edit_post(editor: Actor, post_id: int, changes: dict) -> dict:
    post = _visible_post(editor, post_id)
    if post.author_id != editor.id:
        raise Forbidden("Only the author can edit a post.")
    if "body" in changes:
        post.body = check_body(changes["body"])
        if moderation.screen(post.body) == moderation.HOLD:
            post.hidden_at = clock_now()
            moderation.hold_for_review("post", post.id, "auto-moderation: held for review")
        _tags_and_mentions(post.id, post.body, editor.id)
    if "visibility" in changes:
        post.visibility = changes["visibility"]
    post.edited_at = clock_now()
    db.session.commit()
    return get_post(editor, post_id)


def delete_post(actor: Actor, post_id: int, is_moderator: bool = False) -> None:
    # A moderator removes any post, including one they cannot see (followers only, in a private group,
    # by someone who blocked them): reported content is often exactly that.
    post = _moderated_post(post_id) if is_moderator else _visible_post(actor, post_id)
    if post.author_id != actor.id and not is_moderator:
        raise Forbidden("Only the author or a moderator can delete a post.")
    db.session.delete(post)
    db.session.commit()


# ---- lists: one statement per page, whatever its size ----


# The page statements are built once per shape, with the viewer, cursor, author, tag and limit as bound
# parameters: building a 13-column statement anew cost more than running it.
VIEWER, LIMIT = bindparam("viewer_id", type_=Integer), bindparam("limit", type_=Integer)


def _page_statement():
    liked = exists().where(PostLike.post_id == Post.id, PostLike.user_id == VIEWER).correlate(Post)
    return (
        select(
            Post.id,
            Post.body,
            Post.visibility,
            Post.media,
            Post.created_at,
            Post.edited_at,
            Post.like_count,
            Post.comment_count,
            User.id.label("author_id"),
            User.username,
            User.display_name,
            User.avatar_url,
            liked.label("liked"),
        )
        .join(User, User.id == Post.author_id)
        .where(Post.hidden_at.is_(None))
    )


def _paged(stmt, with_cursor: bool):
    if with_cursor:
        after = tuple_(bindparam("cursor_at", type_=Post.created_at.type), bindparam("cursor_id"))
        stmt = stmt.where(tuple_(Post.created_at, Post.id) < after)
    return stmt.order_by(Post.created_at.desc(), Post.id.desc()).limit(LIMIT)


def _run_page(stmt, params: dict, limit: int, cursor: tuple[datetime, int] | None, pages: int = 1) -> list:
    """Up to `pages` consecutive pages from one statement, each (results, next cursor); the pages after the first
    only while there are posts for them. More pages cost one statement still: on the benchmark's data a feed
    statement of 41 rows took what one of 21 did (the plan reads every post of the followees either way)."""
    params["limit"] = limit * pages + 1
    if cursor is not None:
        params["cursor_at"], params["cursor_id"] = cursor
    rows = read_only(stmt, params)
    items = [
        {
            "id": r.id,
            "author": {
                "id": r.author_id,
                "username": r.username,
                "display_name": r.display_name,
                "avatar_url": r.avatar_url,
            },
            "body": r.body,
            "visibility": r.visibility,
            "media": r.media,
            "created_at": isoformat(r.created_at),
            "edited_at": isoformat(r.edited_at),
            "like_count": r.like_count,
            "comment_count": r.comment_count,
            "liked_by_me": bool(r.liked),
        }
        for r in rows[: limit * pages]
    ]
    out = []
    for start in range(0, max(len(items), 1), limit):  # one page at least (maybe empty), then one per `limit` rows
        end = start + limit
        last = rows[end - 1] if len(rows) > end else None  # a row after this page: the page has a next one
        out.append((items[start:end], (last.created_at, last.id) if last is not None else None))
    return out


def _not_blocked_by_author():
    return ~exists().where(Block.blocker_id == Post.author_id, Block.blocked_id == VIEWER).correlate(Post)


def _not_muted_by_viewer():
    return ~exists().where(Mute.muter_id == VIEWER, Mute.muted_id == Post.author_id).correlate(Post)


def _followees():
    return select(Follow.followee_id).where(Follow.follower_id == VIEWER)


@functools.cache
def _list_statement(with_cursor: bool, by_author: bool, by_tag: bool):
    stmt = _page_statement().where(
        Post.group_id.is_(None),  # group posts live in their group
        or_(Post.visibility == PUBLIC, Post.author_id == VIEWER, Post.author_id.in_(_followees())),
        _not_blocked_by_author(),
    )
    # Asking for one author's posts shows them even if muted, as a muted user's profile does.
    stmt = stmt.where(Post.author_id == bindparam("author_id") if by_author else _not_muted_by_viewer())
    if by_tag:
        stmt = stmt.where(Post.id.in_(select(PostTag.post_id).where(PostTag.tag == bindparam("tag"))))
    return _paged(stmt, with_cursor)


def list_posts(
    viewer: Actor, limit: int, cursor=None, author_id: int | None = None, tag: str | None = None, pages: int = 1
) -> list:
    """Posts the viewer may see, newest first: everyone's public ones, their followees' and their own.
    `pages` consecutive pages (`_run_page`), each (results, next cursor)."""
    params = {"viewer_id": viewer.id, "author_id": author_id, "tag": normal_tag(tag)}
    stmt = _list_statement(cursor is not None, author_id is not None, bool(tag))
    return _run_page(stmt, params, limit, cursor, pages)


def normal_tag(tag: str | None) -> str | None:
    return tag.lstrip("#").lower() if tag else tag


@functools.cache
def _feed_statement(with_cursor: bool):
    authors = _followees().union_all(select(VIEWER))
    stmt = _page_statement().where(
        Post.author_id.in_(authors),
        Post.group_id.is_(None),
        _not_blocked_by_author(),
        _not_muted_by_viewer(),
    )
    return _paged(stmt, with_cursor)


def feed(viewer: Actor, limit: int, cursor=None, pages: int = 1) -> list:
    """Posts of the people the viewer follows and their own, newest first, over (author, created_at) indexes.
    `pages` consecutive pages (`_run_page`), each (results, next cursor)."""
    return _run_page(_feed_statement(cursor is not None), {"viewer_id": viewer.id}, limit, cursor, pages)


@functools.cache
def _group_statement(with_cursor: bool):
    stmt = _page_statement().where(Post.group_id == bindparam("group_id"), _not_blocked_by_author())
    return _paged(stmt, with_cursor)


def group_page(viewer: Actor, group_id: int, limit: int, cursor=None):
    """A group's posts, newest first (the caller has checked the viewer may read the group)."""
    return _run_page(
        _group_statement(cursor is not None), {"viewer_id": viewer.id, "group_id": group_id}, limit, cursor
    )[0]


def item(post: Post, author: User, liked: bool) -> dict:
    return {
        "id": post.id,
        "author": user_json(author),
        "body": post.body,
        "visibility": post.visibility,
        "media": post.media,
        "created_at": isoformat(post.created_at),
        "edited_at": isoformat(post.edited_at),
        "like_count": post.like_count,
        "comment_count": post.comment_count,
        "liked_by_me": liked,
    }


# ---- likes and comments ----


def like(user: Actor, post_id: int) -> dict:
    """Idempotent; the counter moves only when a like row was really added, in the same transaction."""
    post = _visible_post(user, post_id)
    added = insert_ignore(
        PostLike, [{"user_id": user.id, "post_id": post_id, "created_at": clock_now()}], ["user_id", "post_id"]
    )
    if added:
        db.session.execute(update(Post).where(Post.id == post_id).values(like_count=Post.like_count + added))
        notifications.notify(post.author_id, "like", user.id, {"post_id": post_id})
    db.session.commit()
    if added and post.author_id != user.id:
        realtime.emit(
            "post_liked", {"post_id": post_id, "user_id": user.id}, "/feed", realtime.user_room(post.author_id)
        )
    return _like_state(user, post_id)


def unlike(user: Actor, post_id: int) -> dict:
    _visible_post(user, post_id)
    removed = db.session.execute(
        delete(PostLike).where(PostLike.post_id == post_id, PostLike.user_id == user.id)
    ).rowcount
    if removed:
        db.session.execute(update(Post).where(Post.id == post_id).values(like_count=Post.like_count - removed))
    db.session.commit()
    return _like_state(user, post_id)


def _like_state(user: Actor, post_id: int) -> dict:
    count = db.session.scalar(select(Post.like_count).where(Post.id == post_id))
    liked = db.session.scalar(select(exists().where(PostLike.post_id == post_id, PostLike.user_id == user.id)))
    return {"post_id": post_id, "like_count": count, "liked_by_me": bool(liked)}


def add_comment(author: Actor, post_id: int, body: str) -> dict:
    post = _visible_post(author, post_id)
    if blocked_between(author.id, post.author_id):
        raise Forbidden("You cannot comment on this post.", code="blocked")
    body = check_body(body)
    if moderation.screen(body) == moderation.HOLD:
        # Comments are not held: in hold mode they are refused like in reject mode.
        raise ValidationError("This comment was not accepted by auto-moderation.", fields={"body": ["Not accepted."]})
    comment = Comment(post_id=post_id, author_id=author.id, body=body)
    db.session.add(comment)
    db.session.execute(update(Post).where(Post.id == post_id).values(comment_count=Post.comment_count + 1))
    db.session.flush()
    notifications.notify(post.author_id, "comment", author.id, {"post_id": post_id, "comment_id": comment.id})
    for name in {n.lower() for n in MENTION.findall(comment.body)}:
        mentioned = db.session.scalar(select(User.id).where(func.lower(User.username) == name))
        if mentioned is not None and mentioned != post.author_id:
            notifications.notify(mentioned, "mention", author.id, {"post_id": post_id, "comment_id": comment.id})
    db.session.commit()
    if post.author_id != author.id:
        realtime.emit(
            "comment_created",
            {"post_id": post_id, "comment_id": comment.id},
            "/feed",
            realtime.user_room(post.author_id),
        )
    return comment_json(comment, db.session.get(User, author.id))


def comments(viewer: Actor, post_id: int, limit: int, after_id: int | None):
    _visible_post(viewer, post_id)
    stmt = select(Comment, User).join(User, User.id == Comment.author_id).where(Comment.post_id == post_id)
    if after_id is not None:
        stmt = stmt.where(Comment.id > after_id)
    rows = db.session.execute(stmt.order_by(Comment.id).limit(limit + 1)).all()
    page = rows[:limit]
    return [comment_json(c, u) for c, u in page], (page[-1][0].id if len(rows) > limit else None)


def delete_comment(actor: Actor, comment_id: int, is_moderator: bool = False) -> None:
    comment = db.session.get(Comment, comment_id)
    if comment is None:
        raise NotFound("No such comment.")
    post = _moderated_post(comment.post_id) if is_moderator else _visible_post(actor, comment.post_id)
    if actor.id not in (comment.author_id, post.author_id) and not is_moderator:
        raise Forbidden("Only the commenter, the post's author or a moderator can delete a comment.")
    db.session.delete(comment)
    db.session.execute(
        update(Post)
        .where(and_(Post.id == comment.post_id, Post.comment_count > 0))
        .values(comment_count=Post.comment_count - 1)
    )
    db.session.commit()


def comment_json(comment: Comment, author: User) -> dict:
    return {
        "id": comment.id,
        "post_id": comment.post_id,
        "author": user_json(author),
        "body": comment.body,
        "created_at": isoformat(comment.created_at),
    }
