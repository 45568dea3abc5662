"""Fields shared by the schemas."""

from marshmallow import fields

from bsn.clock import isoformat


class Timestamp(fields.DateTime):
    """ISO 8601 in UTC with a trailing Z."""

    def _serialize(self, value, attr, obj, **kwargs):
        return isoformat(value)
