"""Fields shared by the schemas."""

from marshmallow import Schema, fields, validate

from bsn.amounts import to_str
from bsn.clock import isoformat


class Timestamp(fields.DateTime):
    """ISO 8601 in UTC with a trailing Z."""

    def _serialize(self, value, attr, obj, **kwargs):
        # Cached objects hold timestamps already formatted.
        return value if isinstance(value, str) or value is None else isoformat(value)


class Amount(fields.String):
    """Token amounts: base units inside, exact decimal strings outside (never JSON floats)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("metadata", {}).setdefault("example", "12.5")
        super().__init__(**kwargs)

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else to_str(value)


class PageArgsSchema(Schema):
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))
    cursor = fields.String(validate=validate.Length(max=500))


def page(results, next_cursor):
    return {"results": results, "next_cursor": next_cursor}
