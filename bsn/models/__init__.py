"""All models, imported here so Alembic and the app see one metadata."""

from bsn.models.users import AuthToken, Role, User

__all__ = ["AuthToken", "Role", "User"]
