"""The catalogue of reward algorithms: for one session, each gives its pay rate, when pay stops, and what is kept."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from workers.optimizer.inputs import Session
from workers.optimizer.units import HOUR_US, floor8, micros

MAX_SESSION = timedelta(hours=24)  # BSN's default MAX_SESSION; every algorithm here caps a session at a day


@dataclass(frozen=True)
class Context:
    """What a rule may depend on beyond the session itself."""

    heartbeat_timeout: timedelta
    now: datetime | None  # nothing accrues after this instant: it has not happened yet
    user_count: int  # registered users (Pi's halvings)


@dataclass(frozen=True)
class Accrual:
    """One session replayed under one algorithm."""

    tokens: Decimal  # paid, after any slashing, rounded down to 8 places like BSN's base units
    active: Decimal  # the part paid for heartbeat-covered time (before last_heartbeat + heartbeat_timeout)
    end: datetime  # when pay stopped; the session is valued at the price then

    @property
    def uncovered(self) -> Decimal:
        return self.tokens - self.active


def covered_until(session: Session, heartbeat_timeout: timedelta) -> datetime:
    """BSN's end of a session: the earliest of ended_at, last_heartbeat + timeout and started_at + 24 h."""
    ends = [session.last_heartbeat + heartbeat_timeout, session.started_at + MAX_SESSION]
    if session.ended_at is not None:
        ends.append(session.ended_at)
    return min(ends)


def tokens_for(rate: Decimal, start: datetime, end: datetime) -> Decimal:
    """`rate` tokens per hour over [start, end], rounded down to 8 places (zero when end <= start)."""
    return floor8(rate * micros(end - start) / HOUR_US)


class Algorithm:
    """A reward rule. Subclasses set `name` and `rule` and override rate(); end() and kept() default to BSN's."""

    name = ""
    rule = ""

    def rate(self, session: Session, ctx: Context) -> Decimal:
        raise NotImplementedError

    def end(self, session: Session, ctx: Context) -> datetime:
        """Pay stops at BSN's end (see covered_until), never after ctx.now, never before started_at."""
        return _clip(covered_until(session, ctx.heartbeat_timeout), session, ctx)

    def kept(self, session: Session, ctx: Context) -> Decimal:
        """The fraction of the session's earnings the user keeps (1 unless the rule slashes)."""
        return Decimal(1)

    def replay(self, session: Session, ctx: Context) -> Accrual:
        end = self.end(session, ctx)
        rate = self.rate(session, ctx) * self.kept(session, ctx)
        # Slashing and rate scale covered and uncovered time alike, so the split is by time.
        covered_end = min(end, session.last_heartbeat + ctx.heartbeat_timeout)
        tokens = tokens_for(rate, session.started_at, end)
        active = min(tokens, tokens_for(rate, session.started_at, covered_end))
        return Accrual(tokens=tokens, active=active, end=end)


def _clip(end: datetime, session: Session, ctx: Context) -> datetime:
    if ctx.now is not None:
        end = min(end, ctx.now)
    return max(end, session.started_at)


class Bsn(Algorithm):
    """BSN's own rule, recomputed (the input's `accrued` is not used).

    Rate: the session's `power` tokens per hour. Pay runs from started_at to the earliest of ended_at (when
    given), last_heartbeat + heartbeat_timeout and started_at + 24 h, so every paid second is heartbeat-covered.
    """

    name = "bsn"
    rule = "power tokens/hour until the earliest of ended_at, last_heartbeat + heartbeat_timeout, started_at + 24 h"

    def rate(self, session: Session, ctx: Context) -> Decimal:
        return session.power


PI_BASE_RATE = Decimal("0.2")
PI_HALVING_FROM = 1000  # users before the first halving
PI_CIRCLE_BONUS = Decimal("0.2")  # per security-circle member
PI_CIRCLE_MAX = 5


def pi_halvings(user_count: int) -> int:
    """floor(log10(user_count / 1000)), at least 0, in integers.

    For q = user_count // 1000 >= 1, 10**k <= user_count / 1000 exactly when 10**k <= q, so the answer is
    q's digit count minus one; no float logarithm whose rounding could misplace an exact power of ten.
    """
    whole_thousands = user_count // PI_HALVING_FROM
    return len(str(whole_thousands)) - 1 if whole_thousands >= 1 else 0


class Pi(Algorithm):
    """Pi-style: a base rate that halves as the network grows, raised by the user's security circle.

    base = 0.2 / 2**max(0, floor(log10(user_count / 1000))) tokens per hour: 0.2 below 10,000 users, 0.1 from
    10,000, 0.05 from 100,000, and so on. user_count is the input's, else the distinct users in the sessions.
    rate = base x (1 + 0.2 x min(security_circle, 5)): +20% per circle member, at most +100%.
    Pay runs over the same time as bsn (the session's own power is ignored).
    """

    name = "pi"
    rule = (
        "0.2 / 2**max(0, floor(log10(user_count / 1000))) tokens/hour x (1 + 0.2 x min(security_circle, 5)), "
        "over bsn's active time"
    )

    def rate(self, session: Session, ctx: Context) -> Decimal:
        base = PI_BASE_RATE / 2 ** pi_halvings(ctx.user_count)
        return base * (1 + PI_CIRCLE_BONUS * min(session.security_circle, PI_CIRCLE_MAX))


ICE_BASE_RATE = Decimal("0.5")
# (first streak day of the band, bonus in percent); the bands are 0, 1-6, 7-13, 14-29 and 30+ days.
ICE_STREAK_BANDS = ((30, 20), (14, 9), (7, 5), (1, 2), (0, 0))
ICE_IDLE_GRACE_DAYS = 7
ICE_SLASH_PCT_PER_DAY = 1
ICE_SLASH_MAX_PCT = 50


def ice_streak_bonus_pct(streak_days: int) -> int:
    return next(pct for first_day, pct in ICE_STREAK_BANDS if streak_days >= first_day)


def ice_slash_pct(idle_days: int) -> int:
    return min(ICE_SLASH_MAX_PCT, max(0, idle_days - ICE_IDLE_GRACE_DAYS) * ICE_SLASH_PCT_PER_DAY)


class Ice(Algorithm):
    """Ice-style: a flat base rate with a streak bonus, and slashing of balances left idle.

    rate = 0.5 tokens per hour x (1 + bonus), bonus by streak_days: 0 days 0%, 1-6 days 2%, 7-13 days 5%,
    14-29 days 9%, 30 days and more 20%. Slashing: when the user's balance sat idle more than 7 days, the
    session keeps (100 - min(50, idle_days - 7))% of what it earned (1% per idle day beyond 7, at most 50%).
    Pay runs over the same time as bsn (the session's own power is ignored).
    """

    name = "ice"
    rule = (
        "0.5 tokens/hour x (1 + streak bonus: 0 d 0%, 1-6 d 2%, 7-13 d 5%, 14-29 d 9%, 30+ d 20%), over bsn's "
        "active time; idle balances lose 1% per idle day beyond 7 (at most 50%) of the session's earnings"
    )

    def rate(self, session: Session, ctx: Context) -> Decimal:
        return ICE_BASE_RATE * (100 + ice_streak_bonus_pct(session.streak_days)) / 100

    def kept(self, session: Session, ctx: Context) -> Decimal:
        return Decimal(100 - ice_slash_pct(session.idle_days)) / 100


HAMSTER_OFFLINE_CAP = timedelta(hours=3)


class Hamster(Algorithm):
    """Hamster-style: the session's `power` per hour, with offline time after the last heartbeat capped at 3 h.

    Pay runs from started_at to min(ended_at or never, last_heartbeat + 3 h, started_at + 24 h). The heartbeat
    timeout is ignored, so any pay after last_heartbeat + heartbeat_timeout is uncovered (paid for offline time).
    """

    name = "hamster"
    rule = "power tokens/hour until the earliest of ended_at, last_heartbeat + 3 h, started_at + 24 h"

    def rate(self, session: Session, ctx: Context) -> Decimal:
        return session.power

    def end(self, session: Session, ctx: Context) -> datetime:
        ends = [session.last_heartbeat + HAMSTER_OFFLINE_CAP, session.started_at + MAX_SESSION]
        if session.ended_at is not None:
            ends.append(session.ended_at)
        return _clip(min(ends), session, ctx)


# Report order; best_algorithm ties go by name, not by this order.
CATALOGUE: tuple[Algorithm, ...] = (Bsn(), Pi(), Ice(), Hamster())
