"""REST: conversations, messages, read markers and reactions."""

from datetime import datetime

from flask_smorest import Blueprint

from bsn.auth import current_caller, login_required
from bsn.dbtools import decode_cursor, encode_cursor
from bsn.errors import ValidationError
from bsn.schemas.common import PageArgsSchema
from bsn.schemas.messaging import (
    ConversationCreateSchema,
    ConversationPageSchema,
    ConversationSchema,
    EditSchema,
    MembersSchema,
    MessageListArgsSchema,
    MessagePageSchema,
    MessageSchema,
    ReactionResultSchema,
    ReactSchema,
    ReadResultSchema,
    ReadSchema,
    SendSchema,
)
from bsn.services import messaging

blp = Blueprint("messaging", __name__, url_prefix="/api", description="Conversations and messages")
SECURITY = [{"bearer": []}]


@blp.route("/conversations/", methods=["GET"])
@blp.doc(security=SECURITY)
@login_required
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, ConversationPageSchema)
def conversations(args):
    """My conversations by last activity, with the last message and my unread count."""
    cursor = None
    if args.get("cursor"):
        at, last_id = decode_cursor(args["cursor"], 2, (str, int))
        try:
            cursor = (datetime.fromisoformat(at), int(last_id))
        except (TypeError, ValueError):
            raise ValidationError(fields={"cursor": ["Invalid cursor."]}) from None
    items, next_cursor = messaging.list_conversations(current_caller(), args["limit"], cursor)
    return {"results": items, "next_cursor": encode_cursor(*next_cursor) if next_cursor else None}


@blp.route("/conversations/", methods=["POST"])
@blp.doc(security=SECURITY)
@login_required
@blp.arguments(ConversationCreateSchema)
@blp.response(201, ConversationSchema)
def create_conversation(body):
    """One other user id: the direct chat of the pair (the same one every time). More: a group chat."""
    return messaging.create_conversation(current_caller(), body["user_ids"], body.get("title"))


@blp.route("/conversations/<int:conversation_id>/members/", methods=["POST"])
@blp.doc(security=SECURITY)
@login_required
@blp.arguments(MembersSchema)
@blp.response(200, ConversationSchema)
def add_members(body, conversation_id):
    """Group chats: admins add members."""
    return messaging.add_members(current_caller(), conversation_id, body["user_ids"])


@blp.route("/conversations/<int:conversation_id>/members/<int:user_id>/", methods=["DELETE"])
@blp.doc(security=SECURITY)
@login_required
@blp.response(204)
def remove_member(conversation_id, user_id):
    """Group chats: admins remove members; anyone may remove themselves (leave)."""
    messaging.remove_member(current_caller(), conversation_id, user_id)


@blp.route("/conversations/<int:conversation_id>/messages/", methods=["GET"])
@blp.doc(security=SECURITY)
@login_required
@blp.arguments(MessageListArgsSchema, location="query")
@blp.response(200, MessagePageSchema)
def list_messages(args, conversation_id):
    """`after_seq`: ascending from there (catching up); otherwise newest first, `before_seq` to page back.

    `next_cursor` continues in the same direction (it stands for the next after_seq or before_seq).
    """
    if "after_seq" in args and "before_seq" in args:
        raise ValidationError(fields={"after_seq": ["Use after_seq or before_seq, not both."]})
    after, before = args.get("after_seq"), args.get("before_seq")
    if args.get("cursor"):
        direction, seq = decode_cursor(args["cursor"], 2, (str, int))
        if direction not in ("after", "before"):
            raise ValidationError(fields={"cursor": ["Invalid cursor."]})
        after, before = (seq, None) if direction == "after" else (None, seq)
    page = messaging.messages(
        current_caller(), conversation_id, after_seq=after, before_seq=before, limit=args["limit"]
    )
    next_cursor = None
    if page["has_more"]:
        next_cursor = encode_cursor("after" if after is not None else "before", page["results"][-1]["seq"])
    return {**page, "next_cursor": next_cursor}


@blp.route("/conversations/<int:conversation_id>/messages/", methods=["POST"])
@blp.doc(security=SECURITY)
@login_required
@blp.arguments(SendSchema)
@blp.response(201, MessageSchema)
def send(body, conversation_id):
    """Send a message; the same `client_id` again returns the message stored the first time."""
    return messaging.send_message(
        current_caller(), conversation_id, body["body"], body.get("client_id"), body.get("attachments")
    )


@blp.route("/conversations/<int:conversation_id>/read/", methods=["POST"])
@blp.doc(security=SECURITY)
@login_required
@blp.arguments(ReadSchema)
@blp.response(200, ReadResultSchema)
def read(body, conversation_id):
    """Mark read up to `seq` (default: everything); the other members get a read receipt."""
    return messaging.mark_read(current_caller(), conversation_id, body.get("seq"))


@blp.route("/messages/<int:message_id>/", methods=["PATCH"])
@blp.doc(security=SECURITY)
@login_required
@blp.arguments(EditSchema)
@blp.response(200, MessageSchema)
def edit(body, message_id):
    """Edit one's own message within MESSAGE_EDIT_WINDOW."""
    return messaging.edit_message(current_caller(), message_id, body["body"])


@blp.route("/messages/<int:message_id>/", methods=["DELETE"])
@blp.doc(security=SECURITY)
@login_required
@blp.response(200, MessageSchema)
def delete(message_id):
    """Delete one's own message: a tombstone keeps its seq."""
    return messaging.delete_message(current_caller(), message_id)


@blp.route("/messages/<int:message_id>/reactions/", methods=["POST"])
@blp.doc(security=SECURITY)
@login_required
@blp.arguments(ReactSchema)
@blp.response(200, ReactionResultSchema)
def react(body, message_id):
    """Toggle one's reaction (one emoji per user: another replaces it, the same removes it)."""
    return messaging.react(current_caller(), message_id, body["emoji"])


@blp.route("/messages/<int:message_id>/reactions/", methods=["DELETE"])
@blp.doc(security=SECURITY)
@login_required
@blp.response(200, ReactionResultSchema)
def unreact(message_id):
    return messaging.unreact(current_caller(), message_id)
