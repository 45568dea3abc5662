"""Schemas of profiles, follows, posts, comments and likes."""

from marshmallow import Schema, fields, validate

from bsn.schemas.accounts import UserSchema
from bsn.schemas.common import CLIENT_ID, Timestamp
from bsn.schemas.nft import page_of


class ProfileSchema(UserSchema):
    bio = fields.String()
    created_at = Timestamp()
    followers_count = fields.Integer()
    following_count = fields.Integer()
    posts_count = fields.Integer()
    followed_by_me = fields.Boolean()
    muted_by_me = fields.Boolean()


class SearchArgsSchema(Schema):
    q = fields.String(required=True, validate=validate.Length(min=1, max=50))
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))


class UserListSchema(Schema):
    results = fields.List(fields.Nested(UserSchema))


UserPageSchema = page_of(UserSchema)


class FollowStateSchema(Schema):
    user_id = fields.Integer()
    following = fields.Boolean()


class BlockStateSchema(Schema):
    user_id = fields.Integer()
    blocked = fields.Boolean()


class MuteStateSchema(Schema):
    user_id = fields.Integer()
    muted = fields.Boolean()


POST_BODY_MAX = 5000  # characters as sent; POST_MAX_LENGTH (at most this) applies to the stripped text


class PostCreateSchema(Schema):
    body = fields.String(required=True, validate=validate.Length(max=POST_BODY_MAX))
    visibility = fields.String(load_default="public", validate=validate.OneOf(["public", "followers"]))
    media = fields.List(
        fields.Url(schemes={"https"}, validate=validate.Length(max=500)),
        load_default=list,
        validate=validate.Length(max=10),
    )
    client_id = fields.String(
        validate=CLIENT_ID,
        allow_none=True,
        metadata={"description": "the client's id for this post: sent again, it answers the first post"},
    )


class PostEditSchema(Schema):
    body = fields.String(validate=validate.Length(max=POST_BODY_MAX))
    visibility = fields.String(validate=validate.OneOf(["public", "followers"]))


class PostSchema(Schema):
    id = fields.Integer()
    author = fields.Nested(UserSchema)
    body = fields.String()
    visibility = fields.String()
    media = fields.List(fields.String())
    created_at = fields.String(metadata={"format": "date-time"})
    edited_at = fields.String(allow_none=True, metadata={"format": "date-time"})
    like_count = fields.Integer()
    comment_count = fields.Integer()
    liked_by_me = fields.Boolean()


PostPageSchema = page_of(PostSchema)


class PostListArgsSchema(Schema):
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))
    cursor = fields.String(validate=validate.Length(max=500))
    author = fields.Integer(metadata={"description": "only this author's posts"})
    tag = fields.String(
        validate=validate.Length(min=1, max=65), metadata={"description": "a hashtag, with or without #"}
    )


class CommentCreateSchema(Schema):
    body = fields.String(required=True, validate=validate.Length(max=5000))


class CommentSchema(Schema):
    id = fields.Integer()
    post_id = fields.Integer()
    author = fields.Nested(UserSchema)
    body = fields.String()
    created_at = fields.String(metadata={"format": "date-time"})


CommentPageSchema = page_of(CommentSchema)


class LikeStateSchema(Schema):
    post_id = fields.Integer()
    like_count = fields.Integer()
    liked_by_me = fields.Boolean()
