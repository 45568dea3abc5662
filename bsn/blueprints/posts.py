"""REST: posts, the feed, comments and likes."""

import io
import json
from datetime import datetime

from flask import current_app, request
from flask_smorest import Blueprint

from bsn import cache
from bsn.auth import PREHITS, current_caller, current_user, hits_made_ahead, login_required, resolve_token
from bsn.dbtools import cursor_id, decode_cursor, encode_cursor
from bsn.errors import ValidationError
from bsn.fastlane import EARLY, FastLane, teach, within_limits
from bsn.schemas.common import CLIENT_ID, PageArgsSchema, unstorable
from bsn.schemas.social import (
    POST_BODY_MAX,
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
    """A page as JSON, from the cache or from `compute(cursor, pages)` -> [(results, next cursor), ...].

    Lists are built as plain data in the service (the hot path); PostPageSchema documents their shape.
    A page depends on everything posted and on the viewer's follows, blocks and mutes: its key holds the
    global and the viewer's generations (bsn/cache.py). A miss also stores the CACHE_PAGES_AHEAD pages after
    it, read by the same statement under the same generations: a client that scrolls asks for them next, and
    they would cost a statement each.
    """
    viewer = current_caller().id
    cursor = page_cursor(args)
    entry = _page_entry(kind, viewer, args["limit"], extra, args.get("cursor") or "")
    got = cache.read((viewer,), [entry])
    if got is not None and got[1][0] is not None:
        return _json_response(got[1][0])
    ahead = current_app.config["CACHE_PAGES_AHEAD"] if got is not None else 0
    pages = compute(cursor, 1 + ahead)
    bodies = [_page_json(results, next_cursor) for results, next_cursor in pages]
    if got is not None:
        gens, values = got[0], {entry.key(got[0]): bodies[0]}
        # Each page under the cursor its predecessor answers, as the client will send it back.
        for (_, after), body in zip(pages[:-1], bodies[1:], strict=True):
            values[_page_entry(kind, viewer, args["limit"], extra, encode_cursor(*after)).key(gens)] = body
        cache.store(values)
    return _json_response(bodies[0])


def _page_entry(kind: str, viewer: int, limit: int, extra: str, cursor: str) -> cache.Entry:
    return cache.Entry(f"cache:{kind}:", "12", f":{viewer}:{limit}:{extra}:{cursor}")


def _page_json(results: list, next_cursor) -> bytes:
    page = {"results": results, "next_cursor": encode_cursor(*next_cursor) if next_cursor else None}
    return json.dumps(page, separators=(",", ":")).encode()


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
    return _page(
        "posts", args, extra, lambda cursor, pages: posts.list_posts(caller, args["limit"], cursor, author, tag, pages)
    )


@blp.route("/posts/", methods=["POST"])
@blp.doc(security=SECURITY)
@login_required
@blp.arguments(PostCreateSchema)
@blp.response(201, PostSchema)
def create(body):
    early = request.environ.pop(EARLY, None)
    if early is not None:
        raise early  # FastCreatePost called the service, which failed: its error is the answer
    post = posts.create_post(current_caller(), body["body"], body["visibility"], body["media"], body.get("client_id"))
    hits = hits_made_ahead(request.environ)
    if hits is not None:
        teach(request.environ, hits)
    return _json_response(_post_json(post), 201)


def _post_json(post: dict) -> bytes:
    # Plain data built by the service; PostSchema documents its shape.
    return json.dumps(post, separators=(",", ":")).encode()


@blp.route("/feed/", methods=["GET"])
@blp.doc(security=SECURITY)
@login_required
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, PostPageSchema)
def feed(args):
    """Posts of the people you follow and your own, newest first."""
    return _page("feed", args, "", lambda cursor, pages: posts.feed(current_caller(), args["limit"], cursor, pages))


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


# -- post creation without the framework ----------------------------------------------------------------------------


class FastCreatePost(FastLane):
    """Creates a text post before Flask (bsn/fastlane.py): posting is the busiest write there is.

    The lane takes a body only when webargs would take it as it is: a JSON object of PostCreateSchema's
    fields with plain values and no media. Anything else goes to Flask with the body put back. Flask also
    answers, from the outcome the lane leaves in the environ, a token that does not authenticate and a
    breached rate limit; an error of `create_post` (EARLY) is raised by the view, so the post is never
    tried twice. The rate-limit hits are the ones the token lookup made for Flask-Limiter in the first
    create Flask answered; the lane learns nothing while Flask-Limiter hits any counter of its own.
    """

    method, paths, status = "POST", frozenset(("/api/posts/", "/api/posts")), "201 CREATED"

    def learning_key(self) -> tuple:
        return self.app.config["HSTS_ENABLED"], self.app.config["RATELIMIT_USER"]

    def answer(self, environ, token, learnt):
        values = _plain_create(environ, self.app.config["MAX_CONTENT_LENGTH"])
        if values is None:
            return None
        hits = learnt.lesson
        try:
            caller, _error = resolve_token(environ, token, hits)
        except Exception:  # noqa: BLE001 - nothing was hit or stored: Flask authenticates and answers
            return None
        if caller is None or not within_limits(environ.get(PREHITS), hits, caller.id):
            return None
        try:
            post = posts.create_post(caller, *values)
        except Exception as exc:  # noqa: BLE001 - Flask answers it, as it would any error of the view
            environ[EARLY] = exc
            return None
        return _post_json(post), caller.id


_JSON_TYPES = frozenset(("application/json", "application/json; charset=utf-8"))
_CREATE_FIELDS = frozenset(("body", "visibility", "media", "client_id"))


def _plain_create(environ: dict, max_bytes: int | None) -> tuple | None:
    """create_post's (body, visibility, media, client_id) when webargs would read the body as it is, else None.

    The body read is put back in the environ for Flask.
    """
    if environ.get("CONTENT_TYPE", "").lower() not in _JSON_TYPES or "HTTP_TRANSFER_ENCODING" in environ:
        return None
    declared = environ.get("CONTENT_LENGTH", "")
    # Plain digits only; anything else ("+12", "1_2", " 12") is left to werkzeug, which reads some of it otherwise.
    if not (declared.isascii() and declared.isdigit()):
        return None
    length = int(declared)
    if length == 0 or (max_bytes is not None and length > max_bytes):
        return None
    try:
        raw = environ["wsgi.input"].read(length)
    except OSError:
        # The client went away mid-body: Flask, finding the body short, answers as werkzeug does (400).
        raw = b""
    environ["wsgi.input"] = io.BytesIO(raw)
    if len(raw) != length:
        return None
    try:
        data = json.loads(raw.decode())
    except (ValueError, RecursionError):
        return None
    if type(data) is not dict or not data.keys() <= _CREATE_FIELDS:
        return None
    body, visibility, client_id = data.get("body"), data.get("visibility", posts.PUBLIC), data.get("client_id")
    media = data.get("media", [])
    if type(body) is not str or len(body) > POST_BODY_MAX or unstorable(body):
        return None
    if type(visibility) is not str or visibility not in posts.VISIBILITIES or type(media) is not list or media:
        return None
    if client_id is not None and (
        type(client_id) is not str or not CLIENT_ID.min <= len(client_id) <= CLIENT_ID.max or unstorable(client_id)
    ):
        return None
    return body, visibility, [], client_id


@blp.record_once
def _install_fast_create(state) -> None:
    state.app.wsgi_app = FastCreatePost(state.app, state.app.wsgi_app)
