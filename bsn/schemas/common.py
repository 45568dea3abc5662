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


class StrictBoolean(fields.Boolean):
    """A JSON boolean, and only that: marshmallow's Boolean also takes 0, 1, "yes", "on"..., which the
    OpenAPI document (type: boolean) does not allow. Query strings keep fields.Boolean ("true", "1")."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class PageArgsSchema(Schema):
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))
    cursor = fields.String(validate=validate.Length(max=500))


class ErrorBodySchema(Schema):
    code = fields.String(required=True, metadata={"description": "machine-readable, e.g. not_found"})
    message = fields.String(required=True)
    fields_ = fields.Dict(
        data_key="fields",
        keys=fields.String(),
        values=fields.Raw(),
        metadata={"description": "validation problems by field name"},
    )
    request_id = fields.String()


class ErrorSchema(Schema):
    """The error envelope of every failed call: {"error": {"code", "message", "fields"?, "request_id"?}}."""

    error = fields.Nested(ErrorBodySchema, required=True)


# A client's own id for what it creates, so that a retry is recognised (messages, posts).
CLIENT_ID = validate.Length(min=1, max=64)

UNSTORABLE = "Must not contain NUL characters or unpaired surrogates."


def unstorable(value) -> bool:
    """Text no database stores: PostgreSQL refuses NUL in text, and neither encodes a lone surrogate
    (legal in JSON as a \\u escape) as UTF-8. Looks inside lists and objects."""
    if isinstance(value, str):
        return "\x00" in value or (not value.isascii() and _not_utf8(value))
    if isinstance(value, list | tuple):
        return any(unstorable(item) for item in value)
    if isinstance(value, dict):
        return any(unstorable(key) or unstorable(item) for key, item in value.items())
    return False


def _not_utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return True
    return False


def page(results, next_cursor):
    return {"results": results, "next_cursor": next_cursor}
