"""DAO governance: proposals, votes weighted by a balance snapshot at the proposal's start, and closing."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from decimal import Decimal

from flask import current_app
from sqlalchemy import func, select, update

from bsn import amounts, realtime
from bsn.actors import Actor
from bsn.clock import now as clock_now
from bsn.dbtools import get_or_404, insert_ignore, lock, newest_first
from bsn.errors import Conflict, Forbidden, NotFound, ValidationError
from bsn.extensions import db
from bsn.models import LedgerEntry, Proposal, Vote
from bsn.services import notifications, tokens

log = logging.getLogger(__name__)

OPEN, CLOSED = "open", "closed"
PASSED, REJECTED, NO_QUORUM = "passed", "rejected", "no_quorum"
KINDS = ("general", "parameter", "treasury")
MAX_DURATION = timedelta(days=90)
DAO_ROOM = "dao"


def balance_at(user_id: int, at: datetime) -> int:
    """A balance as it stood at `at`: the `balance_after` of the user's last ledger entry by then."""
    return (
        db.session.scalar(
            select(LedgerEntry.balance_after)
            .where(LedgerEntry.user_id == user_id, LedgerEntry.created_at <= at)
            .order_by(LedgerEntry.id.desc())
            .limit(1)
        )
        or 0
    )


def supply_at(at: datetime) -> int:
    """All tokens in existence at `at` (every balance is the sum of its entries, so this is theirs)."""
    return db.session.scalar(select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(LedgerEntry.created_at <= at))


def create_proposal(
    author: Actor,
    title: str,
    description: str,
    kind: str,
    options: list[str],
    ends_at: datetime,
    quorum_bps: int,
    starts_at: datetime | None = None,
) -> Proposal:
    at = clock_now()
    starts_at = starts_at or at
    problems = {}
    if starts_at < at - timedelta(minutes=1):
        problems["starts_at"] = ["Must not be in the past."]
    if ends_at <= starts_at:
        problems["ends_at"] = ["Must be after the start."]
    elif ends_at - starts_at > MAX_DURATION:
        problems["ends_at"] = [f"A vote lasts at most {MAX_DURATION.days} days."]
    if len({o.strip().lower() for o in options}) != len(options):
        problems["options"] = ["Options must differ."]
    if problems:
        raise ValidationError(fields=problems)
    minimum = amounts.to_units(Decimal(current_app.config["DAO_PROPOSAL_MIN_BALANCE"]), positive=False)
    if tokens.balance(author.id) < minimum:
        raise Forbidden(
            f"Proposing needs a balance of at least {amounts.to_str(minimum)} tokens.", code="insufficient_stake"
        )
    proposal = Proposal(
        author_id=author.id,
        title=title,
        description=description,
        kind=kind,
        options=options,
        starts_at=starts_at,
        ends_at=ends_at,
        quorum_bps=quorum_bps,
        status=OPEN,
    )
    db.session.add(proposal)
    db.session.commit()
    realtime.emit("proposal_opened", {"id": proposal.id, "title": title}, realtime.NOTIFICATIONS, DAO_ROOM)
    return proposal


def vote(voter: Actor, proposal_id: int, option: int) -> Vote:
    """Cast or change one's vote until the end; its weight is the voter's balance at the start.

    The proposal row is locked, as the closing job locks it: a vote lands before the tally or not at all.
    """
    where = Proposal.id == proposal_id
    stmt = select(Proposal).where(where).execution_options(populate_existing=True)
    proposal = lock(stmt, Proposal, where).scalar()
    at = clock_now()
    try:
        if proposal is None:
            raise NotFound("No such proposal.")
        if proposal.status != OPEN or at >= proposal.ends_at:
            raise Conflict("Voting on this proposal has ended.", code="voting_closed")
        if at < proposal.starts_at:
            raise Conflict("Voting on this proposal has not started.", code="voting_not_started")
        if not 0 <= option < len(proposal.options):
            raise ValidationError(fields={"option": [f"Choose 0 to {len(proposal.options) - 1}."]})
        weight = balance_at(voter.id, proposal.starts_at)
        if weight <= 0:
            raise Forbidden("You held no tokens when this vote started.", code="no_voting_power")
    except Exception:
        db.session.rollback()
        raise
    # Insert-or-update in two idempotent statements: a voter's concurrent votes cannot make two rows.
    insert_ignore(
        Vote,
        [
            {
                "proposal_id": proposal.id,
                "voter_id": voter.id,
                "option": option,
                "weight": weight,
                "created_at": at,
                "updated_at": at,
            }
        ],
        ["proposal_id", "voter_id"],
    )
    db.session.execute(
        update(Vote)
        .where(Vote.proposal_id == proposal.id, Vote.voter_id == voter.id)
        .values(option=option, updated_at=at)
        .execution_options(synchronize_session=False)
    )
    if proposal.supply_at_start is None:
        db.session.execute(
            update(Proposal)
            .where(Proposal.id == proposal.id, Proposal.supply_at_start.is_(None))
            .values(supply_at_start=supply_at(proposal.starts_at))
            .execution_options(synchronize_session=False)
        )
    db.session.commit()
    return db.session.scalar(select(Vote).where(Vote.proposal_id == proposal.id, Vote.voter_id == voter.id))


def tally(proposal: Proposal) -> list[int]:
    weights = [0] * len(proposal.options)
    rows = db.session.execute(
        select(Vote.option, func.sum(Vote.weight)).where(Vote.proposal_id == proposal.id).group_by(Vote.option)
    )
    for option, weight in rows:
        weights[option] = int(weight)
    return weights


def decide(weights: list[int], supply: int, quorum_bps: int) -> str:
    """No quorum when the weight cast is under `quorum_bps` of the supply at the start; otherwise the
    proposal passes when its first option (the proposal as written) has a strict majority of that weight."""
    cast = sum(weights)
    if cast * 10_000 < quorum_bps * supply or cast == 0:
        return NO_QUORUM
    return PASSED if weights[0] * 2 > cast else REJECTED


def results(proposal: Proposal) -> dict:
    """Live results while open, the recorded ones once closed."""
    weights = [int(w) for w in proposal.tally] if proposal.tally is not None else tally(proposal)
    supply = proposal.supply_at_start
    if supply is None and clock_now() >= proposal.starts_at:
        supply = supply_at(proposal.starts_at)
    return {
        "weights": weights,
        "cast": sum(weights),
        "voters": db.session.scalar(select(func.count()).where(Vote.proposal_id == proposal.id)),
        "supply_at_start": supply,
        "quorum": None if supply is None else -(-proposal.quorum_bps * supply // 10_000),
        "outcome": proposal.outcome,
        "leading": decide(weights, supply or 0, proposal.quorum_bps) if proposal.status == OPEN else None,
    }


def close_due(at: datetime | None = None) -> int:
    """Close every proposal whose vote has ended and record its outcome; idempotent. Returns how many closed."""
    at = at or clock_now()
    due = db.session.scalars(
        select(Proposal.id).where(Proposal.status == OPEN, Proposal.ends_at <= at).order_by(Proposal.id)
    ).all()
    closed = 0
    for proposal_id in due:
        where = Proposal.id == proposal_id
        stmt = select(Proposal).where(where).execution_options(populate_existing=True)
        proposal = lock(stmt, Proposal, where).scalar_one()
        if proposal.status != OPEN:
            db.session.rollback()
            continue
        weights = tally(proposal)
        supply = proposal.supply_at_start if proposal.supply_at_start is not None else supply_at(proposal.starts_at)
        proposal.supply_at_start = supply
        proposal.tally = [str(w) for w in weights]
        proposal.outcome = decide(weights, supply, proposal.quorum_bps)
        proposal.status, proposal.closed_at = CLOSED, at
        voters = db.session.scalars(select(Vote.voter_id).where(Vote.proposal_id == proposal.id)).all()
        payload = {"proposal_id": proposal.id, "outcome": proposal.outcome}
        for user_id in sorted({proposal.author_id, *voters}):
            notifications.notify(user_id, "proposal_closed", None, payload)
        db.session.commit()
        closed += 1
        log.info("proposal %s closed: %s", proposal.id, proposal.outcome)
    return closed


def proposals(status: str | None, limit: int, before_id: int | None):
    stmt = select(Proposal)
    if status:
        stmt = stmt.where(Proposal.status == status)
    return newest_first(stmt, Proposal.id, limit, before_id)


def votes(proposal_id: int, limit: int, before_id: int | None):
    get_or_404(Proposal, proposal_id, "proposal")
    return newest_first(select(Vote).where(Vote.proposal_id == proposal_id), Vote.id, limit, before_id)
