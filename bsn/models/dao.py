"""DAO governance: proposals and the votes cast on them, weighted by a balance snapshot."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bsn.extensions import db
from bsn.models.base import UTCDateTime, utcnow


class Proposal(db.Model):
    __tablename__ = "dao_proposals"

    id: Mapped[int] = mapped_column(primary_key=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(10000), default="")
    kind: Mapped[str] = mapped_column(String(16))
    options: Mapped[list] = mapped_column(JSON)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime())
    quorum_bps: Mapped[int] = mapped_column(Integer)  # share of the supply at the start that must vote
    status: Mapped[str] = mapped_column(String(16), default="open")  # open, closed
    outcome: Mapped[str | None] = mapped_column(String(16))  # passed, rejected, no_quorum
    supply_at_start: Mapped[int | None] = mapped_column(BigInteger)
    tally: Mapped[list | None] = mapped_column(JSON)  # final weight per option, as strings of base units
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        CheckConstraint("quorum_bps >= 0 AND quorum_bps <= 10000", name="quorum_range"),
        CheckConstraint("ends_at > starts_at", name="ends_after_start"),
        Index("ix_dao_proposals_status_ends_at", "status", "ends_at"),
    )


class Vote(db.Model):
    __tablename__ = "dao_votes"

    id: Mapped[int] = mapped_column(primary_key=True)
    proposal_id: Mapped[int] = mapped_column(ForeignKey("dao_proposals.id", ondelete="CASCADE"))
    voter_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    option: Mapped[int] = mapped_column(Integer)
    weight: Mapped[int] = mapped_column(BigInteger)  # the voter's balance when the proposal started
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    __table_args__ = (
        UniqueConstraint("proposal_id", "voter_id", name="uq_dao_votes_proposal_id_voter_id"),
        CheckConstraint("weight > 0", name="weight_positive"),
    )
