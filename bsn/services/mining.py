"""Token mining: sessions, the accrual rule, claims, streaks, achievements and the leaderboard.

The accrual rule: a session accrues `power` base units per hour from `started_at` to its end, and
its end is the earliest of an explicit stop, `last_heartbeat + HEARTBEAT_TIMEOUT`,
`last_activity_at + ACTIVITY_TIMEOUT` and `started_at + MAX_SESSION`. Every read and write applies
the rule with the server's clock, so answers never depend on whether the sweep has run; the sweep
only records ends that the rule already implies.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

import redis
from flask import current_app
from sqlalchemy import case, literal, select, update

from bsn import amounts, realtime
from bsn.actors import Actor, Caller
from bsn.clock import now as clock_now
from bsn.dbtools import insert_ignore, lock, newest_first
from bsn.errors import Conflict, NotFound, RateLimited
from bsn.extensions import db, redis_store
from bsn.models import Achievement, MiningSession, MiningState, User
from bsn.models.base import UTCDateTime
from bsn.services import accounts, heartbeats, tokens

log = logging.getLogger(__name__)

HOUR_US = 3600 * 1_000_000

# End reasons
STOPPED = "stopped"
HEARTBEAT_TIMEOUT = "heartbeat_timeout"
INACTIVE = "inactive"
MAX_SESSION = "max_session"


@dataclass(frozen=True)
class AchievementDef:
    code: str
    title: str
    bonus_pct: int  # added to mining power while held
    measure: str  # the MiningState figure it is earned on: sessions_count, streak_days or total_mined
    threshold: int  # in that figure's unit (base units for total_mined)


ACHIEVEMENTS = (
    AchievementDef("first_session", "First mining session", 1, "sessions_count", 1),
    AchievementDef("streak_7", "Mined 7 days in a row", 5, "streak_days", 7),
    AchievementDef("streak_30", "Mined 30 days in a row", 10, "streak_days", 30),
    AchievementDef("mined_10", "10 tokens mined", 2, "total_mined", 10 * amounts.UNIT),
    AchievementDef("mined_100", "100 tokens mined", 3, "total_mined", 100 * amounts.UNIT),
    AchievementDef("mined_1000", "1,000 tokens mined", 5, "total_mined", 1000 * amounts.UNIT),
)
ACHIEVEMENT_BY_CODE = {a.code: a for a in ACHIEVEMENTS}
STREAK_BONUS_PCT_PER_DAY = 2
STREAK_BONUS_MAX_PCT = 20


# ---- the rule, as pure functions of a session and an instant ----


def accrued(session: MiningSession, until: datetime) -> int:
    """Base units a session has accrued by `until` (never past its end)."""
    end = min(until, session_end(session) or until)
    micros = max(0, (end - session.started_at) // timedelta(microseconds=1))
    return session.power * micros // HOUR_US


def session_end(session: MiningSession) -> datetime | None:
    """When the session ended or will end unless renewed: explicit end, else the earliest deadline."""
    return session.ended_at or session.expires_at


def is_live(session: MiningSession | None, at: datetime) -> bool:
    # A heartbeat exactly at the deadline still counts; one a microsecond later does not.
    return session is not None and session.ended_at is None and session.expires_at >= at


def end_reason(session: MiningSession) -> str:
    if session.end_reason:
        return session.end_reason
    return HEARTBEAT_TIMEOUT if session.heartbeat_deadline <= session.hard_deadline else session.hard_reason


def _settings():
    config = current_app.config
    return (
        timedelta(seconds=config["HEARTBEAT_TIMEOUT"]),
        timedelta(seconds=config["ACTIVITY_TIMEOUT"]),
        timedelta(seconds=config["MAX_SESSION"]),
    )


def _set_hard_deadline(session: MiningSession) -> None:
    _, activity_timeout, max_session = _settings()
    inactive_at = session.last_activity_at + activity_timeout
    capped_at = session.started_at + max_session
    session.hard_deadline, session.hard_reason = (
        (inactive_at, INACTIVE) if inactive_at < capped_at else (capped_at, MAX_SESSION)
    )
    session.expires_at = min(session.heartbeat_deadline, session.hard_deadline)


# ---- state ----


def _state_for_update(user_id: int) -> MiningState:
    insert_ignore(
        MiningState,
        [
            {
                "user_id": user_id,
                "pending": 0,
                "total_mined": 0,
                "streak_days": 0,
                "sessions_count": 0,
                "created_at": clock_now(),
            }
        ],
        ["user_id"],
    )
    # populate_existing: what this session may have loaded before the lock is stale now.
    stmt = select(MiningState).where(MiningState.user_id == user_id).execution_options(populate_existing=True)
    state = lock(stmt, MiningState, MiningState.user_id == user_id).unique().scalar_one()
    if state.session_id is not None:
        # The session row too: a heartbeat or the sweep committing meanwhile is then waited for, not overwritten.
        current = MiningSession.id == state.session_id
        stmt = select(MiningSession).where(current).execution_options(populate_existing=True)
        heartbeats.overlay(lock(stmt, MiningSession, current).scalar_one())
    return state


def _settle(state: MiningState, at: datetime) -> None:
    """Record an end that the rule implies and move the whole accrual of an ended session into `pending`."""
    session = state.session
    if session is None or session.settled or is_live(session, at):
        return
    if session.ended_at is None:
        session.ended_at, session.end_reason = session.expires_at, end_reason(session)
    total = accrued(session, session.ended_at)
    state.pending += total - session.credited
    session.credited = total
    session.settled = True


def effective_streak(state: MiningState, today: date) -> int:
    """A streak counts consecutive UTC days with a session; a missed day resets it."""
    if state.last_session_day is None or state.last_session_day < today - timedelta(days=1):
        return 0
    return state.streak_days


def streak_after_start(state: MiningState, today: date) -> int:
    """The streak a session started today gives."""
    if state.last_session_day == today:
        return state.streak_days
    if state.last_session_day == today - timedelta(days=1):
        return state.streak_days + 1
    return 1


def power_for(streak_days: int, achievement_codes: set[str]) -> int:
    """Base units per hour: base rate x (100% + streak bonus + achievement bonuses)."""
    base = amounts.to_units(Decimal(current_app.config["MINING_BASE_RATE"]), "MINING_BASE_RATE")
    streak_pct = min(max(streak_days - 1, 0) * STREAK_BONUS_PCT_PER_DAY, STREAK_BONUS_MAX_PCT)
    bonus_pct = sum(ACHIEVEMENT_BY_CODE[c].bonus_pct for c in achievement_codes if c in ACHIEVEMENT_BY_CODE)
    return base * (100 + streak_pct + bonus_pct) // 100


def _earned_codes(user_id: int) -> set[str]:
    return set(db.session.scalars(select(Achievement.code).where(Achievement.user_id == user_id)))


def _award(state: MiningState, held: set[str], at: datetime) -> list[str]:
    """Add the achievements the state now qualifies for; returns the new codes."""
    new = [a.code for a in ACHIEVEMENTS if a.code not in held and getattr(state, a.measure) >= a.threshold]
    for code in new:
        db.session.add(Achievement(user_id=state.user_id, code=code, earned_at=at))
    held.update(new)
    return new


# ---- actions ----


def start(user: Actor) -> dict:
    """Start a session; while one is live this returns it unchanged."""
    at = clock_now()
    state = _state_for_update(user.id)
    _settle(state, at)
    if is_live(state.session, at):
        db.session.commit()
        return _stats(state, at)
    state.streak_days = streak_after_start(state, at.date())
    state.last_session_day = at.date()
    state.sessions_count += 1
    held = _earned_codes(user.id)
    earned = _award(state, held, at)
    heartbeat_timeout, _, _ = _settings()
    session = MiningSession(
        user_id=user.id,
        power=power_for(state.streak_days, held),
        started_at=at,
        last_heartbeat=at,
        last_activity_at=at,
        heartbeat_deadline=at + heartbeat_timeout,
        credited=0,
        settled=False,
    )
    _set_hard_deadline(session)
    db.session.add(session)
    db.session.flush()
    state.session = session
    state.last_inactive_check = at
    db.session.commit()
    heartbeats.seed(session)
    log.info("mining started", extra={"user_id": user.id, "session_id": session.id, "power": session.power})
    for code in earned:
        realtime.notify_user(user.id, "achievement_earned", {"code": code})
    return _stats(state, at)


def heartbeat(user: Actor) -> dict:
    """Renew the live session. A lapsed session is not revived: the answer says it stopped, why and when."""
    at = clock_now()
    return _heartbeat_answer(user, at, heartbeats.renew(at, user_id=user.id))


def heartbeat_with_token(raw_token: str) -> dict | None:
    """The heartbeat's fast path: authentication, rate limit and renewal in one Redis round trip.

    None when the token cache cannot answer (cold or revoked): the caller then authenticates the
    ordinary way and calls `heartbeat`.
    """
    at = clock_now()
    outcome = heartbeats.renew(at, token_key=accounts.token_cache_key(raw_token))
    if outcome.status in ("auth_miss", "auth_invalid"):
        return None
    return _heartbeat_answer(Caller(outcome.user_id), at, outcome)


def _heartbeat_answer(user: Actor, at: datetime, outcome: heartbeats.Outcome) -> dict:
    if outcome.status == "limited":
        raise RateLimited("Too many heartbeats.", retry_after=outcome.retry_after)
    if outcome.status != "ok":
        # Redis has no copy of a live session, or holds an old deadline: the database decides.
        session = db.session.scalar(
            select(MiningSession).where(MiningSession.user_id == user.id, MiningSession.ended_at.is_(None))
        )
        heartbeats.overlay(session)
        if not is_live(session, at):
            return stats(user)
        heartbeats.seed(session)
        outcome = heartbeats.renew(at, user_id=user.id, count=False)
        if outcome.status != "ok":
            return stats(user)
    return {
        "is_mining": True,
        "renewed": True,
        "last_heartbeat": at,
        "expires_at": outcome.expires_at,
        "stopped_reason": None,
    }


def activity_check(user: Actor) -> dict:
    """Record that the user is active; answers whether mining goes on."""
    at = clock_now()
    state = _state_for_update(user.id)
    _settle(state, at)
    state.last_inactive_check = at
    session = state.session
    live = is_live(session, at)
    if live:
        session.last_activity_at = at
        _set_hard_deadline(session)
    db.session.commit()
    if live:
        heartbeats.seed(session)
    return _stats(state, at)


def stop(user: Actor) -> dict:
    at = clock_now()
    state = _state_for_update(user.id)
    stopped = is_live(state.session, at)
    if stopped:
        state.session.ended_at, state.session.end_reason = at, STOPPED
    _settle(state, at)
    db.session.commit()
    if stopped:
        heartbeats.forget(state.session)
    return _stats(state, at)


def claim(user: Actor) -> dict:
    """Move everything accrued so far into the balance, through the ledger, exactly once."""
    at = clock_now()
    state = _state_for_update(user.id)
    _settle(state, at)
    session = state.session
    amount = state.pending
    if is_live(session, at):
        total = accrued(session, at)
        amount += total - session.credited
        session.credited = total
    if amount <= 0:
        db.session.rollback()
        raise Conflict("Nothing to claim yet.", code="nothing_to_claim")
    entry = tokens.post(user.id, amount, "mining_claim", reference=f"mining:{session.id if session else 0}")
    state.pending = 0
    state.total_mined += amount
    earned = _award(state, _earned_codes(user.id), at)
    db.session.commit()
    _leaderboard_add(user.id, amount, at)
    for code in earned:
        realtime.notify_user(user.id, "achievement_earned", {"code": code})
    return {"claimed": amount, "balance": entry.balance_after, "entry_id": entry.id}


def stats(user: Actor) -> dict:
    at = clock_now()
    state = db.session.scalar(select(MiningState).where(MiningState.user_id == user.id))
    if state is None:
        state = MiningState(user_id=user.id, pending=0, total_mined=0, streak_days=0, sessions_count=0)
    heartbeats.overlay(state.session)
    return _stats(state, at)


def _stats(state: MiningState, at: datetime) -> dict:
    session = state.session
    live = is_live(session, at)
    pending = state.pending
    if session is not None and not session.settled:
        pending += accrued(session, at) - session.credited
    return {
        "is_mining": live,
        # While idle: the power a session started now would get.
        "mining_power": session.power
        if live
        else power_for(streak_after_start(state, at.date()), _earned_codes(state.user_id)),
        "pending": pending,
        "balance": tokens.balance(state.user_id),
        "started_at": session.started_at if session else None,
        "last_heartbeat": session.last_heartbeat if session else None,
        "last_activity_at": session.last_activity_at if session else None,
        "last_inactive_check": state.last_inactive_check,
        "expires_at": session.expires_at if live else None,
        "ended_at": None if live or session is None else session_end(session),
        "stopped_reason": None if live or session is None else end_reason(session),
        "streak_days": effective_streak(state, at.date()),
        "total_mined": state.total_mined,
    }


# ---- the sweep ----


def sweep(at: datetime | None = None) -> list:
    """Record the end of every lapsed session in one set-based statement; returns (user_id, ended_at, reason)
    of each, for `announce_stopped` (a separate job, so a big sweep is not slowed by its fan-out).

    Idempotent. The instant is fixed before buffered heartbeats are flushed, which keeps it safe beside
    a heartbeat arriving meanwhile (see bsn.services.heartbeats); beside a claim or a stop, row locks
    order the writes.
    """
    at = at or clock_now()
    heartbeats.flush()
    ended = end_lapsed(at)
    db.session.commit()
    if ended:
        log.info("mining sweep ended %d sessions", len(ended))
    return [tuple(row) for row in ended]


def announce_stopped(ended: list) -> None:
    """Tell each user whose session the sweep ended: `mining_stopped {reason, ended_at}`."""
    for user_id, ended_at, reason in ended:
        realtime.notify_user(user_id, "mining_stopped", {"reason": reason, "ended_at": ended_at})


def end_lapsed(at: datetime) -> list:
    """The sweep's UPDATE, uncommitted: (user_id, ended_at, reason) of each session it ended."""
    return db.session.execute(
        update(MiningSession)
        .where(MiningSession.ended_at.is_(None), MiningSession.expires_at < literal(at, UTCDateTime()))
        .values(
            ended_at=MiningSession.expires_at,
            end_reason=case(
                (MiningSession.heartbeat_deadline <= MiningSession.hard_deadline, HEARTBEAT_TIMEOUT),
                else_=MiningSession.hard_reason,
            ),
        )
        .returning(MiningSession.user_id, MiningSession.ended_at, MiningSession.end_reason)
        .execution_options(synchronize_session=False)
    ).all()


# ---- history, achievements, leaderboard ----


def activities(user: Actor, limit: int, before_id: int | None):
    at = clock_now()
    stmt = select(MiningSession).where(MiningSession.user_id == user.id)
    rows, more = newest_first(stmt, MiningSession.id, limit, before_id)
    for session in rows:
        heartbeats.overlay(session)
    items = [
        {
            "id": s.id,
            "started_at": s.started_at,
            "ended_at": None if is_live(s, at) else session_end(s),
            "end_reason": None if is_live(s, at) else end_reason(s),
            "mining_power": s.power,
            "mined": accrued(s, at),
        }
        for s in rows
    ]
    return items, more


def achievements(user: Actor) -> dict:
    rows = db.session.scalars(select(Achievement).where(Achievement.user_id == user.id))
    earned = {a.code: a.earned_at for a in rows}
    return {
        "earned": [
            {"code": a.code, "title": a.title, "bonus_pct": a.bonus_pct, "earned_at": earned[a.code]}
            for a in ACHIEVEMENTS
            if a.code in earned
        ],
        "next": [
            {"code": a.code, "title": a.title, "bonus_pct": a.bonus_pct} for a in ACHIEVEMENTS if a.code not in earned
        ],
    }


OPTIMIZATION_KEYS = {
    "report": "mining:optimization:report",
    "timestamp": "mining:optimization:timestamp",
    "total_profit": "mining:optimization:total_profit",
    "best_algorithm": "mining:optimization:best_algorithm",
}
OPTIMIZATION_LAST_RUN_KEY = "mining:optimization:last_run"
# What everyone may see of the optimizer's report; admins see all of it.
OPTIMIZATION_PUBLIC_FIELDS = ("version", "mode", "generated_at", "window", "best_algorithm", "objective")


def optimization_report(viewer: User) -> dict:
    """The last good optimizer report (written by workers.mining.optimize), whole for admins."""
    raw = redis_store.client.get(OPTIMIZATION_KEYS["report"])
    if raw is None:
        raise NotFound("No optimizer report yet.", code="no_report")
    report = json.loads(raw)
    if viewer.is_admin:
        return report
    return {key: report[key] for key in OPTIMIZATION_PUBLIC_FIELDS if key in report}


LEADERBOARD_ALL = "mining:leaderboard:all"


def _week_key(at: datetime) -> str:
    year, week, _ = at.isocalendar()
    return f"mining:leaderboard:week:{year}-W{week:02d}"


def _leaderboard_add(user_id: int, units: int, at: datetime) -> None:
    """Sorted sets give rank lookups in O(log n) at any size; the database stays the truth."""
    try:
        pipe = redis_store.client.pipeline()
        pipe.zincrby(LEADERBOARD_ALL, units, user_id)
        pipe.zincrby(_week_key(at), units, user_id)
        pipe.expire(_week_key(at), 15 * 86400)
        pipe.execute()
    except redis.RedisError:
        log.warning("leaderboard update skipped: Redis unavailable (the rebuild job restores it)")


def rebuild_leaderboards(at: datetime | None = None, batch: int = 10_000) -> None:
    """Rewrite both sorted sets from the database (after a Redis loss, and periodically)."""
    from sqlalchemy import func

    from bsn.models import LedgerEntry

    at = at or clock_now()
    week_start = datetime.combine(at.date() - timedelta(days=at.weekday()), datetime.min.time(), at.tzinfo)
    client = redis_store.client
    for key, stmt in (
        (
            LEADERBOARD_ALL,
            select(MiningState.user_id, MiningState.total_mined)
            .join(User, User.id == MiningState.user_id)
            .where(MiningState.total_mined > 0, User.deleted_at.is_(None)),
        ),
        (
            _week_key(at),
            select(LedgerEntry.user_id, func.sum(LedgerEntry.amount))
            .join(User, User.id == LedgerEntry.user_id)
            .where(LedgerEntry.kind == "mining_claim", LedgerEntry.created_at >= week_start, User.deleted_at.is_(None))
            .group_by(LedgerEntry.user_id),
        ),
    ):
        temp = key + ":rebuild"
        client.delete(temp)
        rows = db.session.execute(stmt).yield_per(batch)
        for chunk in rows.partitions(batch):
            client.zadd(temp, {str(user_id): int(score) for user_id, score in chunk})
        if client.exists(temp):
            client.rename(temp, key)
        else:
            client.delete(key)
    client.expire(_week_key(at), 15 * 86400)


def leaderboard(user: Actor, period: str, limit: int) -> dict:
    at = clock_now()
    key = LEADERBOARD_ALL if period == "all" else _week_key(at)
    client = redis_store.client
    top = client.zrevrange(key, 0, limit - 1, withscores=True)
    mine_rank = client.zrevrank(key, user.id)
    mine_score = client.zscore(key, user.id)
    ids = [int(member) for member, _ in top]
    users = {u.id: u for u in db.session.scalars(select(User).where(User.id.in_(ids)))} if ids else {}
    return {
        "period": period,
        "results": [
            {"rank": i + 1, "user": users[int(m)], "mined": int(score)}
            for i, (m, score) in enumerate(top)
            if int(m) in users
        ],
        "me": {"rank": None if mine_rank is None else mine_rank + 1, "mined": int(mine_score or 0)},
    }
