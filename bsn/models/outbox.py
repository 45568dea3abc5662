"""The job outbox: jobs whose enqueue failed after their transaction had committed, kept until Redis is back."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from bsn.extensions import db
from bsn.models.base import UTCDateTime, utcnow
from bsn.models.tokens import BigId


class OutboxJob(db.Model):
    __tablename__ = "job_outbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    func: Mapped[str] = mapped_column(String(200))  # dotted path of the job function
    args: Mapped[list] = mapped_column(JSON)
    queue: Mapped[str] = mapped_column(String(20))
    timeout: Mapped[int] = mapped_column(Integer)
    retries: Mapped[int] = mapped_column(Integer, default=0)
    # Cache generations the write moves (bsn/cache.py): moved with the enqueue, so a cached page the outage
    # kept is not served after it.
    cache_moves: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
