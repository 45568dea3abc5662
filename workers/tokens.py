"""Ledger jobs: the audit that every balance equals the sum of its entries."""

from bsn.services import tokens


def audit_ledger() -> dict:
    differences = tokens.audit()
    # The job result (kept in Redis, shown in rq-dashboard) says what was found.
    return {"differences": len(differences), "sample": differences[:20]}
