"""The token ledger: balances change only here, each with its entry, in the caller's transaction."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import func, select, update

from bsn import amounts
from bsn.actors import Actor
from bsn.dbtools import insert_ignore, newest_first
from bsn.errors import InsufficientBalance, NotFound, ValidationError
from bsn.extensions import db
from bsn.models import LedgerEntry, User, Wallet

log = logging.getLogger(__name__)


def post(user_id: int, units: int, kind: str, reference: str | None = None, counterparty_id: int | None = None):
    """Change one balance by `units` (signed) and append its entry; the caller commits.

    The balance moves by a single conditional UPDATE, so concurrent postings serialize on the row
    and a debit that would go below zero changes nothing (the CHECK constraint backs this up).
    """
    if units == 0:
        raise ValueError("a ledger entry cannot be zero")
    insert_ignore(Wallet, [{"user_id": user_id, "balance": 0}], ["user_id"])
    new_balance = db.session.execute(
        update(Wallet)
        .where(Wallet.user_id == user_id, Wallet.balance + units >= 0)
        .values(balance=Wallet.balance + units)
        .returning(Wallet.balance)
        .execution_options(synchronize_session=False)
    ).scalar()
    if new_balance is None:
        raise InsufficientBalance()
    entry = LedgerEntry(
        user_id=user_id,
        kind=kind,
        amount=units,
        balance_after=new_balance,
        reference=reference,
        counterparty_id=counterparty_id,
    )
    db.session.add(entry)
    return entry


@dataclass(frozen=True)
class Posting:
    user_id: int
    units: int  # signed
    kind: str
    reference: str | None = None
    counterparty_id: int | None = None


def post_many(postings: list[Posting]) -> list[LedgerEntry]:
    """Apply several postings in user-id order, so two multi-party moves can never deadlock on wallets.

    Returns the entries in the order given; the caller commits (or rolls back on InsufficientBalance).
    """
    entries: dict[int, LedgerEntry] = {}
    for index in sorted(range(len(postings)), key=lambda i: postings[i].user_id):
        p = postings[index]
        entries[index] = post(p.user_id, p.units, p.kind, p.reference, p.counterparty_id)
    return [entries[i] for i in range(len(postings))]


def balance(user_id: int) -> int:
    return db.session.scalar(select(Wallet.balance).where(Wallet.user_id == user_id)) or 0


def transfer(sender: Actor, to_user_id: int, amount: str) -> LedgerEntry:
    """Move tokens between two users, atomically; returns the sender's entry."""
    units = amounts.to_units(amount)
    if to_user_id == sender.id:
        raise ValidationError("You cannot transfer to yourself.", fields={"to_user_id": ["Must be another user."]})
    recipient = db.session.get(User, to_user_id)
    if recipient is None:
        raise NotFound("No such user.", fields={"to_user_id": ["No such user."]})
    reference = f"transfer:{sender.id}:{to_user_id}"
    try:
        out, _ = post_many(
            [
                Posting(sender.id, -units, "transfer_out", reference, to_user_id),
                Posting(to_user_id, units, "transfer_in", reference, sender.id),
            ]
        )
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    return out


def transactions(user_id: int, limit: int, before_id: int | None):
    return newest_first(select(LedgerEntry).where(LedgerEntry.user_id == user_id), LedgerEntry.id, limit, before_id)


def audit() -> list[dict]:
    """Every wallet whose balance differs from the sum of its entries (an empty list is a clean ledger)."""
    sums = (
        select(LedgerEntry.user_id, func.sum(LedgerEntry.amount).label("total"))
        .group_by(LedgerEntry.user_id)
        .subquery()
    )
    rows = db.session.execute(
        select(Wallet.user_id, Wallet.balance, func.coalesce(sums.c.total, 0))
        .outerjoin(sums, sums.c.user_id == Wallet.user_id)
        .where(Wallet.balance != func.coalesce(sums.c.total, 0))
    ).all()
    orphans = db.session.execute(
        select(sums.c.user_id, sums.c.total)
        .outerjoin(Wallet, Wallet.user_id == sums.c.user_id)
        .where(Wallet.user_id.is_(None))
    ).all()
    problems = [{"user_id": u, "balance": b, "entries_sum": int(s)} for u, b, s in rows]
    problems += [{"user_id": u, "balance": None, "entries_sum": int(s)} for u, s in orphans]
    if problems:
        log.error("ledger audit found %d differences", len(problems), extra={"differences": problems[:50]})
    else:
        log.info("ledger audit clean")
    return problems
