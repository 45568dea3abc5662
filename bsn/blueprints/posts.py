"""REST: posts, the feed, comments and likes."""

import json
from datetime import datetime

from flask import current_app
from flask_smorest import Blueprint

from bsn import cache
from bsn.auth import current_caller, current_user, login_required
from bsn.dbtools import cursor_id, decode_cursor, encode_cursor
from bsn.errors import ValidationError
from bsn.schemas.common import PageArgsSchema
from bsn.schemas.social import (
    CommentCreateSchema,
    CommentPageSchema,
    CommentSchema,
    LikeStateSchema,
    PostCreateSchema,
    PostEditSchema,
    PostListArgsSchema,
    PostPageSchema,
    PostSchema,
)
from bsn.services import posts

blp = Blueprint("posts", __name__, url_prefix="/api", description="Posts, the feed, comments and likes")
SECURITY = [{"bearer": []}]


def page_cursor(args):
    if not args.get("cursor"):
        return None
    at, last_id = decode_cursor(args["cursor"], 2, (str, int))
    try:
        return datetime.fromisoformat(at), int(last_id)
    except (TypeError, ValueError):
        raise ValidationError(fields={"cursor": ["Invalid cursor."]}) from None


def _page(kind: str, args: dict, extra: str, compute):
    """A page as JSON, from the cache or from `compute()` -> (results, next cursor).

    Lists are built as plain data in the service (the hot path); PostPageSchema documents their shape.
    A page depends on everything posted and on the viewer's follows, blocks and mutes: its key holds the
    global and the viewer's generations (bsn/cache.py).
    """
    viewer = current_caller().id
    cursor = page_cursor(args)
    entry = cache.Entry(f"cache:{kind}:", "12", f":{viewer}:{args['limit']}:{extra}:{args.get('cursor') or ''}")
    got = cache.read((viewer,), [entry])
    if got is not None and got[1][0] is not None:
        return _json_response(got[1][0])
    results, next_cursor = compute(cursor)
    page = {"results": results, "next_cursor": encode_cursor(*next_cursor) if next_cursor else None}
    body = json.dumps(page, separators=(",", ":")).encode()
    if got is not None:
        cache.store({entry.key(got[0]): body})
    return _json_response(body)


def _json_response(body: bytes, status: int = 200):
    return current_app.response_class(body, status=status, mimetype="application/json")


@blp.route("/posts/", methods=["GET"])
@blp.doc(security=SECURITY)
@login_required
@blp.arguments(PostListArgsSchema, location="query")
@blp.response(200, PostPageSchema)
def list_posts(args):
    """Posts newest first (`?author=` for one author's, `?tag=` for a hashtag's)."""
    caller = current_caller()
    author, tag = args.get("author"), posts.normal_tag(args.get("tag"))
    extra = f"{'' if author is None else author}:{tag or ''}"
    return _page("posts", args, extra, lambda cursor: posts.list_posts(caller, args["limit"], cursor, author, tag))


@blp.route("/posts/", methods=["POST"])
@blp.doc(security=SECURITY)
@login_required
@blp.arguments(PostCreateSchema)
@blp.response(201, PostSchema)
def create(body):
    post = posts.create_post(current_caller(), body["body"], body["visibility"], body["media"], body.get("client_id"))
    # Plain data built by the service; PostSchema documents its shape.
    return _json_response(json.dumps(post, separators=(",", ":")).encode(), 201)


@blp.route("/feed/", methods=["GET"])
@blp.doc(security=SECURITY)
@login_required
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, PostPageSchema)
def feed(args):
    """Posts of the people you follow and your own, newest first."""
    return _page("feed", args, "", lambda cursor: posts.feed(current_caller(), args["limit"], cursor))


@blp.route("/posts/<int:post_id>/", methods=["GET"])
@blp.doc(security=SECURITY)
@login_required
@blp.response(200, PostSchema)
def get(post_id):
    return posts.get_post(current_caller(), post_id)


@blp.route("/posts/<int:post_id>/", methods=["PATCH"])
@blp.doc(security=SECURITY)
@login_required
@blp.arguments(PostEditSchema)
@blp.response(200, PostSchema)
def edit(body, post_id):
    """Edit one's own post (sets edited_at)."""
    return posts.edit_post(current_caller(), post_id, body)


@blp.route("/posts/<int:post_id>/", methods=["DELETE"])
@blp.doc(security=SECURITY)
@login_required
@blp.response(204)
def delete(post_id):
    """Delete one's own post, or any as a moderator."""
    user = current_user()
    posts.delete_post(user, post_id, is_moderator=user.is_moderator)


@blp.route("/posts/<int:post_id>/comments/", methods=["GET"])
@blp.doc(security=SECURITY)
@login_required
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, CommentPageSchema)
def list_comments(args, post_id):
    """Comments oldest first."""
    after = cursor_id(args)
    results, last = posts.comments(current_caller(), post_id, args["limit"], after)
    return {"results": results, "next_cursor": encode_cursor(last) if last else None}


@blp.route("/posts/<int:post_id>/comments/", methods=["POST"])
@blp.doc(security=SECURITY)
@login_required
@blp.arguments(CommentCreateSchema)
@blp.response(201, CommentSchema)
def comment(body, post_id):
    return posts.add_comment(current_caller(), post_id, body["body"])


@blp.route("/comments/<int:comment_id>/", methods=["DELETE"])
@blp.doc(security=SECURITY)
@login_required
@blp.response(204)
def delete_comment(comment_id):
    """The commenter, the post's author or a moderator may delete a comment."""
    user = current_user()
    posts.delete_comment(user, comment_id, is_moderator=user.is_moderator)


@blp.route("/posts/<int:post_id>/like/", methods=["POST"])
@blp.doc(security=SECURITY)
@login_required
@blp.response(200, LikeStateSchema)
def like(post_id):
    """Like (twice is a no-op)."""
    return posts.like(current_caller(), post_id)


@blp.route("/posts/<int:post_id>/like/", methods=["DELETE"])
@blp.doc(security=SECURITY)
@login_required
@blp.response(200, LikeStateSchema)
def unlike(post_id):
    return posts.unlike(current_caller(), post_id)
