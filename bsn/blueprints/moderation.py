"""REST: reports from everyone; the open queue, actions and the audit log for moderators and admins."""

from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from bsn.auth import current_caller, login_required
from bsn.dbtools import cursor_id, encode_cursor
from bsn.schemas.common import PageArgsSchema
from bsn.services import moderation

blp = Blueprint("moderation", __name__, url_prefix="/api", description="Reports and moderation")
SECURITY = [{"bearer": []}]
TARGET_TYPES = validate.OneOf(sorted(moderation.TARGETS))


class ReportCreateSchema(Schema):
    target_type = fields.String(required=True, validate=TARGET_TYPES)
    target_id = fields.Integer(required=True, strict=True)
    reason = fields.String(required=True, validate=validate.Length(min=1, max=1000))


class ReportSchema(Schema):
    id = fields.Integer()
    reporter_id = fields.Integer(allow_none=True)
    target_type = fields.String()
    target_id = fields.Integer()
    reason = fields.String()
    status = fields.String()
    created_at = fields.String()


class ActionCreateSchema(Schema):
    action = fields.String(required=True, validate=validate.OneOf(moderation.ACTIONS))
    target_type = fields.String(required=True, validate=TARGET_TYPES)
    target_id = fields.Integer(required=True, strict=True)
    reason = fields.String(required=True, validate=validate.Length(min=1, max=1000))
    report_id = fields.Integer(strict=True, allow_none=True)


class AuditEntrySchema(Schema):
    id = fields.Integer()
    moderator_id = fields.Integer(allow_none=True)
    action = fields.String()
    target_type = fields.String()
    target_id = fields.Integer()
    report_id = fields.Integer(allow_none=True)
    reason = fields.String()
    created_at = fields.String()


ReportPageSchema = Schema.from_dict(
    {"results": fields.List(fields.Nested(ReportSchema)), "next_cursor": fields.String(allow_none=True)},
    name="ReportPage",
)
AuditPageSchema = Schema.from_dict(
    {"results": fields.List(fields.Nested(AuditEntrySchema)), "next_cursor": fields.String(allow_none=True)},
    name="AuditPage",
)


def _after(args):
    return cursor_id(args)


@blp.route("/reports/", methods=["POST"])
@blp.doc(security=SECURITY)
@login_required
@blp.arguments(ReportCreateSchema)
@blp.response(201, ReportSchema)
def create_report(body):
    """Report a post, comment, message, story or user."""
    return moderation.report_json(moderation.report(current_caller(), **body))


@blp.route("/moderation/reports/", methods=["GET"])
@blp.doc(security=SECURITY)
@login_required
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, ReportPageSchema)
def queue(args):
    """The open queue, oldest first (moderators and admins)."""
    results, last = moderation.open_reports(current_caller(), args["limit"], _after(args))
    return {"results": results, "next_cursor": encode_cursor(last) if last else None}


@blp.route("/moderation/actions/", methods=["POST"])
@blp.doc(security=SECURITY)
@login_required
@blp.arguments(ActionCreateSchema)
@blp.response(201, AuditEntrySchema)
def action(body):
    """Hide content, suspend or unsuspend a user, or dismiss a report; recorded in the audit log."""
    return moderation.act(current_caller(), **body)


@blp.route("/moderation/audit-log/", methods=["GET"])
@blp.doc(security=SECURITY)
@login_required
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, AuditPageSchema)
def audit_log(args):
    """Every moderator action: who, what, when, why (moderators and admins)."""
    results, last = moderation.audit_log(current_caller(), args["limit"], _after(args))
    return {"results": results, "next_cursor": encode_cursor(last) if last else None}
