"""REST: groups, membership and join requests, group posts, events with RSVPs, files."""

from flask import jsonify
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from bsn.auth import current_caller, login_required
from bsn.blueprints.posts import page_cursor
from bsn.dbtools import cursor_id, encode_cursor
from bsn.schemas.common import PageArgsSchema, StrictBoolean
from bsn.schemas.social import PostPageSchema, PostSchema
from bsn.services import groups

blp = Blueprint("groups", __name__, url_prefix="/api/groups", description="Groups")
SECURITY = [{"bearer": []}]


class GroupCreateSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    description = fields.String(load_default="", validate=validate.Length(max=2000))
    private = StrictBoolean(load_default=False)


class GroupSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    description = fields.String()
    private = fields.Boolean()
    owner_id = fields.Integer(allow_none=True)
    member_count = fields.Integer()
    my_role = fields.String(allow_none=True)
    my_status = fields.String(allow_none=True, metadata={"description": "active, pending (a join request) or null"})
    created_at = fields.String()


class GroupMemberSchema(Schema):
    id = fields.Integer()
    username = fields.String()
    display_name = fields.String()
    avatar_url = fields.String(allow_none=True)
    role = fields.String()
    joined_at = fields.String()


class GroupMemberArgsSchema(PageArgsSchema):
    pending = fields.Boolean(load_default=False, metadata={"description": "join requests (group admins)"})


class GroupRoleSchema(Schema):
    role = fields.String(required=True, validate=validate.OneOf(["admin", "member"]))


class GroupPostCreateSchema(Schema):
    body = fields.String(required=True, validate=validate.Length(max=5000))


class EventCreateSchema(Schema):
    title = fields.String(required=True, validate=validate.Length(min=1, max=200))
    starts_at = fields.AwareDateTime(required=True)
    location = fields.String(load_default="", validate=validate.Length(max=200))


class GroupEventSchema(Schema):
    id = fields.Integer()
    group_id = fields.Integer()
    title = fields.String()
    location = fields.String()
    starts_at = fields.String()
    created_by = fields.Integer(allow_none=True)
    rsvps = fields.Dict()


class RsvpSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["going", "maybe", "no"]))


class RsvpResultSchema(Schema):
    event_id = fields.Integer()
    status = fields.String()


class FileCreateSchema(Schema):
    upload_id = fields.String(required=True, validate=validate.Length(min=1, max=32))
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))


class GroupFileSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    url = fields.String()
    content_type = fields.String()
    size = fields.Integer()
    uploaded_by = fields.Integer(allow_none=True)
    created_at = fields.String()


def _list_of(schema):
    return Schema.from_dict({"results": fields.List(fields.Nested(schema))}, name=f"{schema.__name__}List")


def _page_of(schema):
    return Schema.from_dict(
        {"results": fields.List(fields.Nested(schema)), "next_cursor": fields.String(allow_none=True)},
        name=f"{schema.__name__}Page",
    )


def _after(args):
    return cursor_id(args)


@blp.route("/", methods=["GET"])
@blp.doc(security=SECURITY)
@login_required
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, _page_of(GroupSchema))
def list_groups(args):
    results, last = groups.list_groups(current_caller(), args["limit"], _after(args))
    return {"results": results, "next_cursor": encode_cursor(last) if last else None}


@blp.route("/", methods=["POST"])
@blp.doc(security=SECURITY)
@login_required
@blp.arguments(GroupCreateSchema)
@blp.response(201, GroupSchema)
def create(body):
    """Create a group; you are its owner."""
    return groups.create_group(current_caller(), **body)


@blp.route("/<int:group_id>/", methods=["GET"])
@blp.doc(security=SECURITY)
@login_required
@blp.response(200, GroupSchema)
def detail(group_id):
    return groups.get_group(current_caller(), group_id)


@blp.route("/<int:group_id>/join/", methods=["POST"])
@blp.doc(security=SECURITY)
@login_required
@blp.response(200, GroupSchema)
def join(group_id):
    """Join a public group at once; for a private one, ask (a group admin approves)."""
    return groups.join(current_caller(), group_id)


@blp.route("/<int:group_id>/leave/", methods=["POST"])
@blp.doc(security=SECURITY)
@login_required
@blp.response(200, GroupSchema)
def leave(group_id):
    return groups.leave(current_caller(), group_id)


@blp.route("/<int:group_id>/members/", methods=["GET"])
@blp.doc(security=SECURITY)
@login_required
@blp.arguments(GroupMemberArgsSchema, location="query")
@blp.response(200, _page_of(GroupMemberSchema))
def members(args, group_id):
    results, last = groups.members(current_caller(), group_id, args["limit"], _after(args), args["pending"])
    return {"results": results, "next_cursor": encode_cursor(last) if last else None}


@blp.route("/<int:group_id>/requests/<int:user_id>/approve/", methods=["POST"])
@blp.doc(security=SECURITY)
@login_required
@blp.response(200, GroupSchema)
def approve(group_id, user_id):
    return groups.decide_request(current_caller(), group_id, user_id, approve=True)


@blp.route("/<int:group_id>/requests/<int:user_id>/reject/", methods=["POST"])
@blp.doc(security=SECURITY)
@login_required
@blp.response(200, GroupSchema)
def reject(group_id, user_id):
    return groups.decide_request(current_caller(), group_id, user_id, approve=False)


@blp.route("/<int:group_id>/members/<int:user_id>/role/", methods=["POST"])
@blp.doc(security=SECURITY)
@login_required
@blp.arguments(GroupRoleSchema)
@blp.response(204)
def role(body, group_id, user_id):
    """Make a member an admin, or an admin a member (group admins)."""
    groups.set_role(current_caller(), group_id, user_id, body["role"])


@blp.route("/<int:group_id>/posts/", methods=["GET"])
@blp.doc(security=SECURITY)
@login_required
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, PostPageSchema)
def posts(args, group_id):
    results, next_cursor = groups.group_posts(current_caller(), group_id, args["limit"], page_cursor(args))
    return jsonify(results=results, next_cursor=encode_cursor(*next_cursor) if next_cursor else None)


@blp.route("/<int:group_id>/posts/", methods=["POST"])
@blp.doc(security=SECURITY)
@login_required
@blp.arguments(GroupPostCreateSchema)
@blp.response(201, PostSchema)
def create_post(body, group_id):
    return groups.create_group_post(current_caller(), group_id, body["body"])


@blp.route("/<int:group_id>/events/", methods=["GET"])
@blp.doc(security=SECURITY)
@login_required
@blp.response(200, _list_of(GroupEventSchema))
def events(group_id):
    return {"results": groups.events(current_caller(), group_id)}


@blp.route("/<int:group_id>/events/", methods=["POST"])
@blp.doc(security=SECURITY)
@login_required
@blp.arguments(EventCreateSchema)
@blp.response(201, GroupEventSchema)
def create_event(body, group_id):
    return groups.create_event(current_caller(), group_id, **body)


@blp.route("/<int:group_id>/events/<int:event_id>/rsvp/", methods=["POST"])
@blp.doc(security=SECURITY)
@login_required
@blp.arguments(RsvpSchema)
@blp.response(200, RsvpResultSchema)
def rsvp(body, group_id, event_id):
    """Going, maybe or no (changeable)."""
    return groups.rsvp(current_caller(), group_id, event_id, body["status"])


@blp.route("/<int:group_id>/files/", methods=["GET"])
@blp.doc(security=SECURITY)
@login_required
@blp.response(200, _list_of(GroupFileSchema))
def files(group_id):
    return {"results": groups.files(current_caller(), group_id)}


@blp.route("/<int:group_id>/files/", methods=["POST"])
@blp.doc(security=SECURITY)
@login_required
@blp.arguments(FileCreateSchema)
@blp.response(201, GroupFileSchema)
def add_file(body, group_id):
    """Share one of your uploads with the group."""
    return groups.add_file(current_caller(), group_id, body["upload_id"], body["name"])
