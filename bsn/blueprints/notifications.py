"""REST: the caller's notifications, read markers and per-kind preferences."""

from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from bsn.auth import current_caller, login_required
from bsn.dbtools import cursor_id, encode_cursor
from bsn.schemas.common import StrictBoolean
from bsn.services import notifications

blp = Blueprint("notifications", __name__, url_prefix="/api/notifications", description="Notifications")
SECURITY = [{"bearer": []}]


class ListArgs(Schema):
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))
    cursor = fields.String(validate=validate.Length(max=500))
    unread = fields.Boolean(load_default=False)


class NotificationSchema(Schema):
    id = fields.Integer()
    kind = fields.String()
    actor = fields.Dict(allow_none=True)
    data = fields.Dict()
    read = fields.Boolean()
    created_at = fields.String()


class NotificationPageSchema(Schema):
    results = fields.List(fields.Nested(NotificationSchema))
    next_cursor = fields.String(allow_none=True)
    unread_count = fields.Integer()


class MarkReadSchema(Schema):
    ids = fields.List(
        fields.Integer(strict=True),
        validate=validate.Length(min=1, max=500),
        metadata={"description": "leave out to mark all read"},
    )


class UnreadSchema(Schema):
    unread_count = fields.Integer()


# Every kind is a boolean field: {"follow": true, "like": false, ...}
PreferencesSchema = Schema.from_dict({kind: StrictBoolean() for kind in notifications.KINDS}, name="Preferences")


@blp.route("/", methods=["GET"])
@blp.doc(security=SECURITY)
@login_required
@blp.arguments(ListArgs, location="query")
@blp.response(200, NotificationPageSchema)
def listing(args):
    """Newest first, with the unread count."""
    before = cursor_id(args)
    results, last, unread = notifications.listing(current_caller(), args["limit"], before, args["unread"])
    return {"results": results, "next_cursor": encode_cursor(last) if last else None, "unread_count": unread}


@blp.route("/read/", methods=["POST"])
@blp.doc(security=SECURITY)
@login_required
@blp.arguments(MarkReadSchema)
@blp.response(200, UnreadSchema)
def read(body):
    """Mark some (`ids`) or all notifications read."""
    return {"unread_count": notifications.mark_read(current_caller(), body.get("ids"))}


@blp.route("/preferences/", methods=["GET"])
@blp.doc(security=SECURITY)
@login_required
@blp.response(200, PreferencesSchema)
def get_preferences():
    """Which kinds of notification you get."""
    return notifications.preferences(current_caller())


@blp.route("/preferences/", methods=["PATCH"])
@blp.doc(security=SECURITY)
@login_required
@blp.arguments(PreferencesSchema)
@blp.response(200, PreferencesSchema)
def set_preferences(body):
    return notifications.set_preferences(current_caller(), body)


@blp.route("/email-preferences/", methods=["GET"])
@blp.doc(security=SECURITY)
@login_required
@blp.response(200, PreferencesSchema)
def get_email_preferences():
    """Which kinds of notification also reach you in the e-mail digest (all off until you turn some on)."""
    return notifications.email_preferences(current_caller())


@blp.route("/email-preferences/", methods=["PATCH"])
@blp.doc(security=SECURITY)
@login_required
@blp.arguments(PreferencesSchema)
@blp.response(200, PreferencesSchema)
def set_email_preferences(body):
    """Turn kinds on or off for the digest, sent every NOTIFICATION_EMAIL_INTERVAL to a verified address."""
    return notifications.set_email_preferences(current_caller(), body)
