"""REST: profiles, search, follows, blocks and mutes."""

from flask import current_app
from flask_smorest import Blueprint

from bsn.auth import current_caller, login_required
from bsn.dbtools import cursor_id, encode_cursor
from bsn.schemas.common import PageArgsSchema
from bsn.schemas.social import (
    BlockStateSchema,
    FollowStateSchema,
    MuteStateSchema,
    ProfileSchema,
    SearchArgsSchema,
    UserListSchema,
    UserPageSchema,
)
from bsn.services import users

blp = Blueprint("users", __name__, url_prefix="/api/users", description="People and the social graph")
SECURITY = [{"bearer": []}]


@blp.route("/", methods=["GET"])
@blp.doc(security=SECURITY)
@login_required
@blp.arguments(SearchArgsSchema, location="query")
@blp.response(200, UserListSchema)
def search(args):
    """Prefix search on username and display name."""
    return {"results": users.search(current_caller(), args["q"], args["limit"])}


@blp.route("/<int:user_id>/", methods=["GET"])
@blp.doc(security=SECURITY)
@login_required
@blp.response(200, ProfileSchema)
def profile(user_id):
    """A profile with follower, following and post counts."""
    # Built (or cached) as JSON by the service; ProfileSchema documents its shape.
    return current_app.response_class(users.profile(current_caller(), user_id), mimetype="application/json")


@blp.route("/<int:user_id>/follow/", methods=["POST"])
@blp.doc(security=SECURITY)
@login_required
@blp.response(200, FollowStateSchema)
def follow(user_id):
    """Follow (twice is a no-op)."""
    return users.follow(current_caller(), user_id)


@blp.route("/<int:user_id>/unfollow/", methods=["DELETE"])
@blp.doc(security=SECURITY)
@login_required
@blp.response(200, FollowStateSchema)
def unfollow(user_id):
    """Unfollow (twice is a no-op)."""
    return users.unfollow(current_caller(), user_id)


@blp.route("/<int:user_id>/block/", methods=["POST"])
@blp.doc(security=SECURITY)
@login_required
@blp.response(200, BlockStateSchema)
def block(user_id):
    """Block: they can no longer follow, message, comment on or see you; follows both ways end."""
    return users.block(current_caller(), user_id)


@blp.route("/<int:user_id>/block/", methods=["DELETE"])
@blp.doc(security=SECURITY)
@login_required
@blp.response(200, BlockStateSchema)
def unblock(user_id):
    return users.unblock(current_caller(), user_id)


@blp.route("/<int:user_id>/mute/", methods=["POST"])
@blp.doc(security=SECURITY)
@login_required
@blp.response(200, MuteStateSchema)
def mute(user_id):
    """Mute: their posts and stories leave your lists and they no longer notify you; they are not told."""
    return users.mute(current_caller(), user_id)


@blp.route("/<int:user_id>/mute/", methods=["DELETE"])
@blp.doc(security=SECURITY)
@login_required
@blp.response(200, MuteStateSchema)
def unmute(user_id):
    return users.unmute(current_caller(), user_id)


def _follow_page(user_id, args, direction):
    after = cursor_id(args)
    results, last = users.follow_list(current_caller(), user_id, direction, args["limit"], after)
    return {"results": results, "next_cursor": encode_cursor(last) if last else None}


@blp.route("/<int:user_id>/followers/", methods=["GET"])
@blp.doc(security=SECURITY)
@login_required
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, UserPageSchema)
def followers(args, user_id):
    return _follow_page(user_id, args, "followers")


@blp.route("/<int:user_id>/following/", methods=["GET"])
@blp.doc(security=SECURITY)
@login_required
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, UserPageSchema)
def following(args, user_id):
    return _follow_page(user_id, args, "following")
