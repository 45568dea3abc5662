"""REST: uploads and stories."""

from flask import Response, current_app, request
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from bsn.auth import current_caller, login_required
from bsn.errors import ValidationError
from bsn.extensions import limiter
from bsn.services import media

blp = Blueprint("media", __name__, url_prefix="/api", description="Uploads and stories")
SECURITY = [{"bearer": []}]


class UploadSchema(Schema):
    id = fields.String()
    content_type = fields.String()
    size = fields.Integer()
    url = fields.String()
    created_at = fields.String()


class StoryCreateSchema(Schema):
    media = fields.String(
        required=True,
        validate=validate.Length(min=1, max=500),
        metadata={"description": "an upload id or an https URL"},
    )
    caption = fields.String(load_default="", validate=validate.Length(max=500))


class StorySchema(Schema):
    id = fields.Integer()
    author = fields.Dict()
    media = fields.String()
    caption = fields.String()
    created_at = fields.String()
    expires_at = fields.String()
    view_count = fields.Integer()


class StoryGroupSchema(Schema):
    author = fields.Dict()
    stories = fields.List(fields.Nested(StorySchema))


class StoryGroupsSchema(Schema):
    results = fields.List(fields.Nested(StoryGroupSchema))


class StoryReactSchema(Schema):
    emoji = fields.String(required=True, validate=validate.Length(min=1, max=32))


class ViewersSchema(Schema):
    results = fields.List(fields.Dict())


class StoryReactionSchema(Schema):
    story_id = fields.Integer()
    reaction = fields.String()


UPLOAD_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"file": {"type": "string", "format": "binary"}},
                "required": ["file"],
            }
        }
    },
}
# What a download can be: the types save_upload accepts, found by sniffing the content.
DOWNLOAD_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp", "video/mp4")
DOWNLOAD_RESPONSE = {
    "description": "The file",
    "content": {kind: {"schema": {"type": "string", "format": "binary"}} for kind in DOWNLOAD_TYPES},
}


@blp.route("/uploads/", methods=["POST"])
@blp.doc(
    security=SECURITY,
    description="multipart/form-data with one `file` part (PNG, JPEG, GIF, WebP, MP4).",
    requestBody=UPLOAD_BODY,
)
@login_required
@limiter.limit("30 per minute")
@blp.response(201, UploadSchema)
def upload():
    """Upload a file; its type is checked on its content, its size against UPLOAD_MAX_BYTES."""
    # This call alone may carry more than MAX_CONTENT_LENGTH (the multipart envelope needs a little room).
    request.max_content_length = current_app.config["UPLOAD_MAX_BYTES"] + 64 * 1024
    file = request.files.get("file")
    if file is None:
        raise ValidationError(fields={"file": ["Send the file as the multipart part `file`."]})
    return media.upload_json(media.save_upload(current_caller(), file.read()))


@blp.route("/uploads/<string:upload_id>", methods=["GET"])
@blp.doc(responses={"200": DOWNLOAD_RESPONSE})
def download(upload_id):
    """The file, with its checked content type; public, as images are embedded by URL."""
    item, data = media.read_upload(upload_id)
    response = Response(data, mimetype=item.content_type)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response.headers["Cache-Control"] = "public, max-age=86400, immutable"
    return response


@blp.route("/stories/", methods=["GET"])
@blp.doc(security=SECURITY)
@login_required
@blp.response(200, StoryGroupsSchema)
def stories():
    """Live stories of the people you follow (and yours), grouped by author."""
    return {"results": media.stories_of_followed(current_caller())}


@blp.route("/stories/", methods=["POST"])
@blp.doc(security=SECURITY)
@login_required
@blp.arguments(StoryCreateSchema)
@blp.response(201, StorySchema)
def create_story(body):
    """A story: an upload or https media and a caption; gone 24 h later."""
    return media.create_story(current_caller(), body["media"], body["caption"])


@blp.route("/stories/<int:story_id>/view/", methods=["POST"])
@blp.doc(security=SECURITY)
@login_required
@blp.response(200, StorySchema)
def view(story_id):
    """Record a view (once per viewer)."""
    return media.view_story(current_caller(), story_id)


@blp.route("/stories/<int:story_id>/react/", methods=["POST"])
@blp.doc(security=SECURITY)
@login_required
@blp.arguments(StoryReactSchema)
@blp.response(200, StoryReactionSchema)
def react(body, story_id):
    """React (one reaction per viewer, changeable)."""
    return media.react_to_story(current_caller(), story_id, body["emoji"])


@blp.route("/stories/<int:story_id>/viewers/", methods=["GET"])
@blp.doc(security=SECURITY)
@login_required
@blp.response(200, ViewersSchema)
def story_viewers(story_id):
    """Who viewed a story, and their reactions (its author only)."""
    return {"results": media.viewers(current_caller(), story_id)}
