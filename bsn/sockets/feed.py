"""The /feed and /notifications namespaces: server-pushed events, delivered to each user's room."""

from flask_socketio import join_room
from marshmallow import Schema, fields, validate

from bsn.schemas.messaging import int64
from bsn.services import notifications
from bsn.sockets.base import BSNNamespace


class FeedNamespace(BSNNamespace):
    """Subscribes on connect: the services publish post_created, post_liked, comment_created,
    story_created and user_followed to the user rooms of the people concerned."""

    def __init__(self) -> None:
        super().__init__("/feed")


class MarkReadPayload(Schema):
    ids = fields.List(int64(), required=True, validate=validate.Length(min=1, max=500))


class NotificationsNamespace(BSNNamespace):
    schemas = {"mark_read": MarkReadPayload}

    def __init__(self) -> None:
        super().__init__("/notifications")

    def connected(self, caller) -> None:
        # DAO proposals are announced to everyone who listens.
        join_room("dao")

    def on_mark_read(self, caller, payload):
        return {"unread_count": notifications.mark_read(caller, payload["ids"])}
