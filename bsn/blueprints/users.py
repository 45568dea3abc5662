"""REST: profiles, search, follows, blocks and mutes."""

import re

from flask import current_app, request
from flask_smorest import Blueprint

from bsn.auth import PREHITS, current_caller, hits_made_ahead, login_required, resolve_token
from bsn.dbtools import cursor_id, encode_cursor
from bsn.fastlane import EARLY, FastLane, teach, within_limits
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
    early = request.environ.pop(EARLY, None)
    if early is not None:
        raise early  # FastProfile called the service, which refused: its error is the answer
    # Built (or cached) as JSON by the service; ProfileSchema documents its shape.
    body = users.profile(current_caller(), user_id)
    hits = hits_made_ahead(request.environ)
    if hits is not None:
        teach(request.environ, hits)
    return current_app.response_class(body, mimetype="application/json")


# Plain ASCII digits with no leading zero, of a size any database takes: other spellings are Flask's to route.
_PROFILE_PATH = re.compile(r"/api/users/([1-9][0-9]{0,17})/")


class FastProfile(FastLane):
    """Answers a profile before Flask (bsn/fastlane.py), as FastCreatePost creates a post: the service already
    builds (or reads from the cache) the answer's bytes, and Flask's request machinery cost more than all of it.
    A query string, a token that does not authenticate, a breached rate limit go to Flask; a refusal of the
    service (404) is raised by the view from EARLY, so the profile is never looked up twice."""

    method, status = "GET", "200 OK"

    def matches(self, path: str) -> bool:
        return _PROFILE_PATH.fullmatch(path) is not None

    def learning_key(self) -> tuple:
        return self.app.config["HSTS_ENABLED"], self.app.config["RATELIMIT_USER"]

    def answer(self, environ, token, learnt):
        if environ.get("QUERY_STRING"):
            return None
        hits = learnt.lesson
        try:
            caller, _error = resolve_token(environ, token, hits)
        except Exception:  # noqa: BLE001 - nothing was hit: Flask authenticates and answers
            return None
        if caller is None or not within_limits(environ.get(PREHITS), hits, caller.id):
            return None
        user_id = int(_PROFILE_PATH.fullmatch(environ["PATH_INFO"]).group(1))
        try:
            return users.profile(caller, user_id), caller.id
        except Exception as exc:  # noqa: BLE001 - Flask answers it, as it would any error of the view
            environ[EARLY] = exc
            return None


@blp.record_once
def _install_fast_profile(state) -> None:
    state.app.wsgi_app = FastProfile(state.app, state.app.wsgi_app)


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
