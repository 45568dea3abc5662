"""The social graph and what people post: follows, blocks, mutes, posts, comments, likes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bsn.extensions import db
from bsn.models.base import UTCDateTime, client_id_index, utcnow
from bsn.models.tokens import BigId


class Follow(db.Model):
    __tablename__ = "follows"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    follower_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    followee_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        # "Whom I follow" (the feed) by the unique index, "who follows me" by its mirror.
        UniqueConstraint("follower_id", "followee_id", name="uq_follows_follower_id_followee_id"),
        Index("ix_follows_followee_id_follower_id", "followee_id", "follower_id"),
        CheckConstraint("follower_id <> followee_id", name="not_self"),
    )


class Block(db.Model):
    __tablename__ = "blocks"

    id: Mapped[int] = mapped_column(primary_key=True)
    blocker_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    blocked_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        UniqueConstraint("blocker_id", "blocked_id", name="uq_blocks_blocker_id_blocked_id"),
        Index("ix_blocks_blocked_id_blocker_id", "blocked_id", "blocker_id"),
    )


class Mute(db.Model):
    """The muter no longer sees the muted user's posts and stories in lists, nor notifications from them.

    Unlike a block, the muted user is not told and can still follow, message and see the muter.
    """

    __tablename__ = "mutes"

    id: Mapped[int] = mapped_column(primary_key=True)
    muter_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    muted_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (UniqueConstraint("muter_id", "muted_id", name="uq_mutes_muter_id_muted_id"),)


class Post(db.Model):
    __tablename__ = "posts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    body: Mapped[str] = mapped_column(Text)
    visibility: Mapped[str] = mapped_column(String(16), default="public")  # public, followers
    media: Mapped[list] = mapped_column(JSON, default=list)
    # Counters move in the same transaction as the like or comment they count.
    like_count: Mapped[int] = mapped_column(Integer, default=0)
    comment_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    edited_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    hidden_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # by a moderator, or held for review
    group_id: Mapped[int | None] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"))  # a group post
    client_id: Mapped[str | None] = mapped_column(String(64))  # the author's client's id for it, if it sent one

    __table_args__ = (
        Index("ix_posts_created_at_id", "created_at", "id"),
        client_id_index("posts", "author_id"),
        Index("ix_posts_author_id_created_at_id", "author_id", "created_at", "id"),
        Index("ix_posts_group_id_created_at_id", "group_id", "created_at", "id"),
        CheckConstraint("like_count >= 0 AND comment_count >= 0", name="counts_not_negative"),
    )


class Comment(db.Model):
    __tablename__ = "comments"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"))
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (Index("ix_comments_post_id_id", "post_id", "id"),)


class PostLike(db.Model):
    __tablename__ = "likes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        UniqueConstraint("user_id", "post_id", name="uq_likes_user_id_post_id"),
        Index("ix_likes_post_id", "post_id"),
    )
