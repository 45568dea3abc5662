"""The report: replay every session under every algorithm, score them, pick the best, and flag offline mining."""

from __future__ import annotations

import decimal
import json
from datetime import datetime, timedelta
from decimal import Decimal

from workers.optimizer.algorithms import CATALOGUE, Algorithm, Context, covered_until, tokens_for
from workers.optimizer.inputs import Dataset, Market, Session
from workers.optimizer.units import (
    CONTEXT,
    DAY_US,
    PLACES,
    fmt_amount,
    fmt_share,
    fmt_time,
    micros,
    round8,
)

VERSION = 1
DEFAULT_DAILY_BUDGET = Decimal(1000)
DEFAULT_HEARTBEAT_TIMEOUT = timedelta(seconds=300)  # BSN's default HEARTBEAT_TIMEOUT

OBJECTIVE = (
    "pay active miners most: the highest active_miner_tokens (tokens for heartbeat-covered time) among the "
    "algorithms whose daily_emission is within daily_budget; if none is, the lowest daily_emission; "
    "ties go to the alphabetically first name"
)


def default_now(dataset: Dataset, market: Market) -> datetime | None:
    """The latest timestamp in the input, so a report never depends on when it was run."""
    times = [t for s in dataset.sessions for t in s.timestamps()] + list(market.times)
    return max(times, default=None)


def build_report(
    dataset: Dataset,
    market: Market,
    *,
    daily_budget: Decimal = DEFAULT_DAILY_BUDGET,
    heartbeat_timeout: timedelta = DEFAULT_HEARTBEAT_TIMEOUT,
    now: datetime | None = None,
) -> dict:
    """The whole report as a dict built in a fixed key order (json.dumps then gives the same bytes every time)."""
    with decimal.localcontext(CONTEXT):
        return _build(dataset, market, daily_budget, heartbeat_timeout, now)


def _build(
    dataset: Dataset, market: Market, daily_budget: Decimal, heartbeat_timeout: timedelta, now: datetime | None
) -> dict:
    sessions = dataset.sessions
    now = now if now is not None else default_now(dataset, market)
    users = sorted({s.user_id for s in sessions})
    user_count = dataset.user_count if dataset.user_count is not None else len(users)
    ctx = Context(heartbeat_timeout=heartbeat_timeout, now=now, user_count=user_count)
    window = _window(sessions, now)
    # Less than a day of data would otherwise extrapolate a few busy hours into a daily rate.
    divisor_days = max(Decimal(1), window["days"])

    algorithms = {}
    before_first_price = {}
    for algorithm in CATALOGUE:
        metrics, early = _score(algorithm, sessions, users, market, ctx, divisor_days, daily_budget)
        algorithms[algorithm.name] = metrics
        before_first_price[algorithm.name] = early
    offline = detect_offline_mining(sessions, heartbeat_timeout)

    return {
        "version": VERSION,
        "mode": "full" if sessions and market else "minimal",
        "generated_at": fmt_time(now),
        "window": {
            "from": fmt_time(window["from"]),
            "to": fmt_time(window["to"]),
            "days": fmt_amount(window["days"]),
        },
        "sessions": len(sessions),
        "users": len(users),
        "daily_budget": fmt_amount(daily_budget),
        "objective": OBJECTIVE,
        "algorithms": {name: _public(metrics) for name, metrics in algorithms.items()},
        "best_algorithm": choose_best(algorithms),
        "total_profit": fmt_amount(algorithms["bsn"]["value"]),
        "offline_mining": offline,
        "notes": _notes(dataset, market, users, user_count, now, before_first_price, offline),
    }


def _window(sessions: tuple[Session, ...], now: datetime | None) -> dict:
    """From the first start to the last recorded instant of any session (not past `now`); exact days."""
    if not sessions:
        return {"from": None, "to": None, "days": Decimal(0)}
    start = min(s.started_at for s in sessions)
    end = max(t for s in sessions for t in s.timestamps())
    if now is not None:
        end = max(start, min(end, now))
    return {"from": start, "to": end, "days": Decimal(micros(end - start)) / DAY_US}


def _score(
    algorithm: Algorithm,
    sessions: tuple[Session, ...],
    users: list[int],
    market: Market,
    ctx: Context,
    divisor_days: Decimal,
    daily_budget: Decimal,
) -> tuple[dict, int]:
    """The algorithm's metrics (Decimals) and how many sessions ended before the first market price.

    Each session is valued at the price when its pay stopped under this algorithm; daily_emission is
    tokens_emitted / max(1, window days).
    """
    emitted = active = value = Decimal(0)
    per_user = dict.fromkeys(users, Decimal(0))
    early = 0
    for session in sessions:
        accrual = algorithm.replay(session, ctx)
        emitted += accrual.tokens
        active += accrual.active
        per_user[session.user_id] += accrual.tokens
        price, known = market.price_at(accrual.end)
        early += not known
        value += accrual.tokens * price
    daily = round8(emitted / divisor_days)
    return {
        "rule": algorithm.rule,
        "tokens_emitted": emitted,
        "value": value,
        "top1_share": top1_share(per_user),
        "uncovered_tokens": emitted - active,
        "active_miner_tokens": active,
        "daily_emission": daily,
        # Compared as reported (8 places), so a reader can check it from the report alone.
        "within_budget": daily <= daily_budget,
    }, early


def top1_share(per_user: dict[int, Decimal]) -> Decimal:
    """Share of all tokens received by the top 1% of users, rounded up to whole users (at least the top one)."""
    total = sum(per_user.values(), Decimal(0))
    if not per_user or total == 0:
        return Decimal(0)
    top = (len(per_user) + 99) // 100
    ranked = sorted(per_user.values(), reverse=True)
    return sum(ranked[:top], Decimal(0)) / total


def _public(metrics: dict) -> dict:
    return {
        key: fmt_share(value) if key == "top1_share" else fmt_amount(value) if isinstance(value, Decimal) else value
        for key, value in metrics.items()
    }


def choose_best(algorithms: dict[str, dict]) -> str:
    """The objective (see OBJECTIVE): among algorithms within the daily budget, the one paying active miners
    most (max active_miner_tokens); if none is within budget, the one with the lowest daily_emission.
    Ties go to the alphabetically first name. Metrics are compared at 8 places, as reported.
    """
    within = [name for name, m in algorithms.items() if m["within_budget"]]
    if within:
        return min(within, key=lambda name: (-round8(algorithms[name]["active_miner_tokens"]), name))
    return min(algorithms, key=lambda name: (algorithms[name]["daily_emission"], name))


def detect_offline_mining(sessions: tuple[Session, ...], heartbeat_timeout: timedelta) -> list[dict]:
    """Sessions BSN credited for more than heartbeat cover allows: time nobody was there to mine.

    covered = power x hours from started_at to min(ended_at, last_heartbeat + heartbeat_timeout, started_at + 24 h),
    rounded down to 8 places as BSN rounds. A session is flagged when accrued - covered > 0.00000001 (one base
    unit of slack for rounding). Sorted by excess descending, then user_id, then started_at.
    """
    found = []
    with decimal.localcontext(CONTEXT):
        for session in sessions:
            covered = tokens_for(session.power, session.started_at, covered_until(session, heartbeat_timeout))
            excess = session.accrued - covered
            if excess > PLACES:
                found.append((excess, session, covered))
    found.sort(key=lambda item: (-item[0], item[1].user_id, item[1].started_at))
    return [
        {
            "user_id": session.user_id,
            "started_at": fmt_time(session.started_at),
            "accrued": fmt_amount(session.accrued),
            "covered": fmt_amount(covered),
            "excess": fmt_amount(excess),
        }
        for excess, session, covered in found
    ]


def _notes(dataset, market, users, user_count, now, before_first_price, offline) -> list[str]:
    """Plain-language caveats, in a fixed order, so a reader knows what the numbers rest on."""
    notes = []
    if not dataset.sessions:
        notes.append("no sessions in the input: every algorithm emits 0")
    if not market:
        notes.append("no market data: the token price is taken as 0, so every value and total_profit are 0")
    if any(before_first_price.values()):
        counts = ", ".join(f"{name} {count}" for name, count in before_first_price.items())
        notes.append(f"sessions whose pay ended before the first market price, valued at that first price: {counts}")
    open_sessions = sum(1 for s in dataset.sessions if s.ended_at is None)
    if open_sessions:
        notes.append(f"{open_sessions} session(s) still open: replayed up to generated_at {fmt_time(now)}")
    if dataset.sessions:
        if dataset.user_count is None:
            notes.append(f"user_count not given: pi halves by the {len(users)} distinct user(s) in the sessions")
        else:
            notes.append(f"pi halves by the input's user_count of {user_count}")
    if offline:
        notes.append(f"{len(offline)} session(s) credited beyond heartbeat cover: see offline_mining")
    return notes


def render(report: dict) -> str:
    """The report as the CLI prints it: insertion order kept, 2-space indent, one trailing newline."""
    return json.dumps(report, indent=2, sort_keys=False, ensure_ascii=True) + "\n"
