"""Input files: load the sessions and market JSON and check their shape into plain, immutable records."""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from workers.optimizer.units import InputError, parse_decimal, parse_int, parse_time

END_REASONS = ("stopped", "heartbeat_timeout", "inactive", "max_session")


@dataclass(frozen=True)
class Session:
    user_id: int
    started_at: datetime
    ended_at: datetime | None  # None: still open when exported
    last_heartbeat: datetime
    power: Decimal  # tokens per hour
    accrued: Decimal  # what BSN credited; only the offline-mining detector reads it
    end_reason: str | None
    streak_days: int
    security_circle: int
    idle_days: int

    def timestamps(self) -> list[datetime]:
        return [t for t in (self.started_at, self.last_heartbeat, self.ended_at) if t is not None]


@dataclass(frozen=True)
class Dataset:
    sessions: tuple[Session, ...]
    user_count: int | None  # registered users, when the exporter knew it


@dataclass(frozen=True)
class Market:
    """Token prices in USD by time, sorted; empty when no market file was given."""

    times: tuple[datetime, ...] = ()
    prices: tuple[Decimal, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.times)

    def price_at(self, at: datetime) -> tuple[Decimal, bool]:
        """The price at `at` or last before it, and whether one existed.

        Before the first quote there is no "last before"; the first quote is the nearest evidence of the
        price, so it is used and the caller notes it (False).
        """
        if not self.times:
            return Decimal(0), True
        index = bisect.bisect_right(self.times, at)
        if index == 0:
            return self.prices[0], False
        return self.prices[index - 1], True


def load_json(path: str, what: str) -> object:
    """Read a JSON file; numbers with a fraction arrive as exact Decimals, never floats."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle, parse_float=Decimal, parse_constant=_reject_constant)
    except OSError as exc:
        raise InputError(f"{what} file {path!r} is unreadable: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise InputError(f"{what} file {path!r} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{what} file {path!r} is not valid JSON: {exc.msg} at line {exc.lineno}") from None


def _reject_constant(name: str) -> None:
    raise InputError(f"{name} is not a number")


def parse_sessions(document: object) -> Dataset:
    if not isinstance(document, dict):
        raise InputError('sessions file: expected a JSON object {"sessions": [...]}')
    raw = document.get("sessions")
    if not isinstance(raw, list):
        raise InputError('sessions file: "sessions" must be a list')
    user_count = document.get("user_count")
    if user_count is not None:
        user_count = parse_int(user_count, "user_count")
    return Dataset(tuple(_parse_session(item, i) for i, item in enumerate(raw)), user_count)


def _parse_session(item: object, index: int) -> Session:
    where = f"sessions[{index}]"
    if not isinstance(item, dict):
        raise InputError(f"{where}: expected an object")
    for key in ("user_id", "started_at", "last_heartbeat", "power", "accrued"):
        if key not in item:
            raise InputError(f"{where}: missing {key!r}")
    started_at = parse_time(item["started_at"], f"{where}.started_at")
    last_heartbeat = parse_time(item["last_heartbeat"], f"{where}.last_heartbeat")
    ended_at = item.get("ended_at")
    ended_at = None if ended_at is None else parse_time(ended_at, f"{where}.ended_at")
    # Times out of order would make negative durations that silently read as zero; refuse them instead.
    if last_heartbeat < started_at:
        raise InputError(f"{where}: last_heartbeat is before started_at")
    if ended_at is not None and ended_at < started_at:
        raise InputError(f"{where}: ended_at is before started_at")
    end_reason = item.get("end_reason")
    if end_reason is not None and end_reason not in END_REASONS:
        raise InputError(f"{where}.end_reason: expected one of {', '.join(END_REASONS)} or null, got {end_reason!r}")
    return Session(
        user_id=parse_int(item["user_id"], f"{where}.user_id"),
        started_at=started_at,
        ended_at=ended_at,
        last_heartbeat=last_heartbeat,
        power=parse_decimal(item["power"], f"{where}.power"),
        accrued=parse_decimal(item["accrued"], f"{where}.accrued"),
        end_reason=end_reason,
        streak_days=parse_int(item.get("streak_days", 0), f"{where}.streak_days"),
        security_circle=parse_int(item.get("security_circle", 0), f"{where}.security_circle"),
        idle_days=parse_int(item.get("idle_days", 0), f"{where}.idle_days"),
    )


def parse_market(document: object) -> Market:
    if not isinstance(document, dict) or not isinstance(document.get("prices"), list):
        raise InputError('market file: expected a JSON object {"prices": [{"t": ..., "price": ...}, ...]}')
    quotes = []
    for index, item in enumerate(document["prices"]):
        where = f"prices[{index}]"
        if not isinstance(item, dict) or "t" not in item or "price" not in item:
            raise InputError(f'{where}: expected an object with "t" and "price"')
        quotes.append((parse_time(item["t"], f"{where}.t"), parse_decimal(item["price"], f"{where}.price")))
    # A stable sort keeps file order among equal times, so the last quote listed for an instant wins in price_at.
    quotes.sort(key=lambda quote: quote[0])
    return Market(tuple(t for t, _ in quotes), tuple(p for _, p in quotes))
