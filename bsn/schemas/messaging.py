"""Schemas of conversations, messages, receipts and reactions (REST bodies and socket payloads alike)."""

from marshmallow import Schema, fields, validate

from bsn.schemas.accounts import UserSchema
from bsn.schemas.common import CLIENT_ID, Timestamp

EMOJI = validate.Length(min=1, max=32)
# The columns' ranges (conversation and user ids are INTEGER; message and notification ids and seqs BIGINT):
# a value outside matches nothing, and the database refuses to even compare it (PostgreSQL: integer out of
# range; SQLite: no 64-bit integer).
INT32 = validate.Range(min=-(2**31), max=2**31 - 1)
INT64 = validate.Range(min=-(2**63), max=2**63 - 1)
SEQ = validate.Range(min=0, max=2**63 - 1)


def int32(**kwargs):
    return fields.Integer(strict=True, validate=INT32, **kwargs)


def int64(**kwargs):
    return fields.Integer(strict=True, validate=INT64, **kwargs)


class ConversationCreateSchema(Schema):
    user_ids = fields.List(fields.Integer(strict=True), required=True, validate=validate.Length(min=1, max=255))
    title = fields.String(validate=validate.Length(min=1, max=100), allow_none=True)


class MembersSchema(Schema):
    user_ids = fields.List(fields.Integer(strict=True), required=True, validate=validate.Length(min=1, max=255))


class ReactionSchema(Schema):
    user_id = fields.Integer()
    emoji = fields.String()


class MessageSchema(Schema):
    id = fields.Integer()
    conversation_id = fields.Integer()
    seq = fields.Integer(metadata={"description": "gap-free and increasing within the conversation"})
    sender = fields.Nested(UserSchema, allow_none=True)
    body = fields.String()
    client_id = fields.String(allow_none=True)
    attachments = fields.List(fields.String())
    reactions = fields.List(fields.Nested(ReactionSchema))
    created_at = Timestamp()
    edited_at = Timestamp(allow_none=True)
    deleted = fields.Boolean()


class MemberSchema(Schema):
    user_id = fields.Integer()
    role = fields.String()
    last_read_seq = fields.Integer()


class ConversationSchema(Schema):
    id = fields.Integer()
    kind = fields.String()
    title = fields.String(allow_none=True)
    last_seq = fields.Integer()
    last_message_at = Timestamp(allow_none=True)
    created_at = Timestamp()
    members = fields.List(fields.Nested(MemberSchema))


class ConversationItemSchema(Schema):
    conversation = fields.Nested(ConversationSchema)
    last_message = fields.Nested(MessageSchema, allow_none=True)
    unread_count = fields.Integer()
    last_read_seq = fields.Integer()


class ConversationPageSchema(Schema):
    results = fields.List(fields.Nested(ConversationItemSchema))
    next_cursor = fields.String(allow_none=True)


class SendSchema(Schema):
    body = fields.String(required=True, validate=validate.Length(max=4000))
    client_id = fields.String(validate=CLIENT_ID, allow_none=True)
    attachments = fields.List(
        fields.Url(schemes={"https"}, validate=validate.Length(max=500)),
        validate=validate.Length(max=10),
        metadata={"description": "https URLs of files (upload ids come with the uploads API)"},
    )


class SocketSendSchema(SendSchema):
    conversation_id = int32(required=True)


class MessageListArgsSchema(Schema):
    after_seq = fields.Integer(validate=validate.Range(min=0))
    before_seq = fields.Integer(validate=validate.Range(min=1))
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=100))
    cursor = fields.String(validate=validate.Length(max=500), metadata={"description": "next_cursor of a page"})


class MessagePageSchema(Schema):
    results = fields.List(fields.Nested(MessageSchema))
    next_cursor = fields.String(allow_none=True, metadata={"description": "the next page in the same direction"})
    has_more = fields.Boolean()


class EditSchema(Schema):
    body = fields.String(required=True, validate=validate.Length(min=1, max=4000))


class ReadSchema(Schema):
    seq = fields.Integer(validate=validate.Range(min=0), metadata={"description": "default: the newest message"})


class ReadResultSchema(Schema):
    conversation_id = fields.Integer()
    last_read_seq = fields.Integer()


class ReactSchema(Schema):
    emoji = fields.String(required=True, validate=EMOJI)


class ReactionResultSchema(Schema):
    message_id = fields.Integer()
    conversation_id = fields.Integer()
    user_id = fields.Integer()
    emoji = fields.String(allow_none=True)


# ---- socket payloads ----


class JoinPayload(Schema):
    conversation_id = int32(required=True)


class TypingPayload(Schema):
    conversation_id = int32(required=True)
    is_typing = fields.Boolean(required=True)


class ReadPayload(Schema):
    conversation_id = int32(required=True)
    message_id = int64()
    seq = fields.Integer(strict=True, validate=SEQ)


class ReactPayload(Schema):
    message_id = int64(required=True)
    emoji = fields.String(required=True, validate=EMOJI)


class SyncPayload(Schema):
    conversation_id = int32(required=True)
    after_seq = fields.Integer(required=True, strict=True, validate=SEQ)
