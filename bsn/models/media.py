"""Uploaded files and stories."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bsn.extensions import db
from bsn.models.base import UTCDateTime, utcnow


class Upload(db.Model):
    __tablename__ = "uploads"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # random hex, also the storage key
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    content_type: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Story(db.Model):
    __tablename__ = "stories"

    id: Mapped[int] = mapped_column(primary_key=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    media: Mapped[str] = mapped_column(String(500))  # an upload id or an https URL
    upload_id: Mapped[str | None] = mapped_column(ForeignKey("uploads.id", ondelete="SET NULL"))
    caption: Mapped[str] = mapped_column(String(500), default="")
    view_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index("ix_stories_expires_at", "expires_at"),
        Index("ix_stories_author_id_expires_at", "author_id", "expires_at"),
    )


class StoryView(db.Model):
    __tablename__ = "story_views"

    id: Mapped[int] = mapped_column(primary_key=True)
    story_id: Mapped[int] = mapped_column(ForeignKey("stories.id", ondelete="CASCADE"))
    viewer_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    reaction: Mapped[str | None] = mapped_column(String(32))  # one per viewer, changeable
    viewed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (UniqueConstraint("story_id", "viewer_id", name="uq_story_views_story_id_viewer_id"),)
