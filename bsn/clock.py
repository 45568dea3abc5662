"""The server's clock: the only clock that counts, and one tests can set."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class Clock:
    def __init__(self) -> None:
        self._frozen: datetime | None = None

    def now(self) -> datetime:
        return self._frozen if self._frozen is not None else datetime.now(UTC)

    # Test hooks: a frozen clock only moves when told to.
    def freeze(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("freeze() needs an aware datetime")
        self._frozen = at.astimezone(UTC)

    def advance(self, **delta: float) -> datetime:
        if self._frozen is None:
            raise RuntimeError("advance() needs a frozen clock")
        self._frozen += timedelta(**delta)
        return self._frozen

    def unfreeze(self) -> None:
        self._frozen = None


clock = Clock()


def now() -> datetime:
    return clock.now()


def isoformat(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a Z, as CONTRACT.md fixes."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
