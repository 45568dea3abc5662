"""Hashtags of posts, for `GET /api/posts/?tag=`."""

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from bsn.extensions import db
from bsn.models.tokens import BigId


class PostTag(db.Model):
    __tablename__ = "post_tags"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"))
    tag: Mapped[str] = mapped_column(String(64))  # lower case, without the #

    __table_args__ = (
        Index("ix_post_tags_tag_post_id", "tag", "post_id"),
        Index("ix_post_tags_post_id", "post_id"),
    )
