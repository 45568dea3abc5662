"""Mining: one state row per user, a row per session, and earned achievements."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Boolean, Date, ForeignKey, Index, Integer, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from bsn.extensions import db
from bsn.models.base import UTCDateTime, utcnow
from bsn.models.tokens import BigId


class MiningSession(db.Model):
    """A session is the truth of what it accrued: power x (end - start), end by the accrual rule.

    `heartbeat_deadline` and `hard_deadline` (the earlier of the activity timeout and the session cap)
    are stored so that the sweep and the heartbeat need only comparisons, the same SQL on every backend.
    """

    __tablename__ = "mining_sessions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    power: Mapped[int] = mapped_column(BigInteger)  # base units per hour, fixed for the session
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_heartbeat: Mapped[datetime] = mapped_column(UTCDateTime())
    last_activity_at: Mapped[datetime] = mapped_column(UTCDateTime())
    heartbeat_deadline: Mapped[datetime] = mapped_column(UTCDateTime())
    hard_deadline: Mapped[datetime] = mapped_column(UTCDateTime())
    hard_reason: Mapped[str] = mapped_column(String(16))  # "inactive" or "max_session"
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())  # min(heartbeat_deadline, hard_deadline)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    end_reason: Mapped[str | None] = mapped_column(String(24))
    credited: Mapped[int] = mapped_column(BigInteger, default=0)  # units already moved to pending or balance
    settled: Mapped[bool] = mapped_column(Boolean, default=False)  # all its accrual is in the user's pending

    __table_args__ = (
        Index("ix_mining_sessions_user_id_started_at", "user_id", "started_at"),
        # The sweep reads only open sessions, by deadline: it grows with the lapsed rows, not the table.
        Index(
            "ix_mining_sessions_open_expires_at",
            "expires_at",
            sqlite_where=text("ended_at IS NULL"),
            postgresql_where=text("ended_at IS NULL"),
        ),
    )


class MiningState(db.Model):
    __tablename__ = "mining_states"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    session_id: Mapped[int | None] = mapped_column(ForeignKey("mining_sessions.id", ondelete="SET NULL"))
    pending: Mapped[int] = mapped_column(BigInteger, default=0)  # settled, not yet claimed
    total_mined: Mapped[int] = mapped_column(BigInteger, default=0)  # claimed, all time
    streak_days: Mapped[int] = mapped_column(Integer, default=0)
    last_session_day: Mapped[date | None] = mapped_column(Date)
    sessions_count: Mapped[int] = mapped_column(Integer, default=0)
    last_inactive_check: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    session: Mapped[MiningSession | None] = relationship(lazy="joined")

    __table_args__ = (Index("ix_mining_states_total_mined", "total_mined"),)


class Achievement(db.Model):
    __tablename__ = "achievements"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(32))
    earned_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (UniqueConstraint("user_id", "code", name="uq_achievements_user_id_code"),)
