"""All models, imported here so Alembic and the app see one metadata."""

from bsn.models.mining import Achievement, MiningSession, MiningState
from bsn.models.tokens import LedgerEntry, Wallet
from bsn.models.users import AuthToken, Role, User

__all__ = ["Achievement", "AuthToken", "LedgerEntry", "MiningSession", "MiningState", "Role", "User", "Wallet"]
