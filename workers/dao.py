"""DAO jobs: closing proposals whose vote has ended."""

from bsn.services import dao


def close_due() -> int:
    return dao.close_due()
