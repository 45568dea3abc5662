"""The /presence namespace: heartbeats from clients, and presence queries about people one talks with."""

from marshmallow import Schema, fields, validate

from bsn.schemas.messaging import int32
from bsn.services import presence
from bsn.sockets.base import BSNNamespace, emit_to_caller


class QueryPayload(Schema):
    user_ids = fields.List(int32(), required=True, validate=validate.Length(min=1, max=200))


class PresenceNamespace(BSNNamespace):
    schemas = {"query": QueryPayload}

    def __init__(self) -> None:
        super().__init__(presence.NAMESPACE)

    def on_heartbeat(self, caller, payload):
        # Connections are refreshed by the process; a client heartbeat also proves this socket alive now.
        presence.refresh(self.local_connections_of(caller.id))
        return {"ok": True}

    def on_query(self, caller, payload):
        answer = presence.query(caller, payload["user_ids"])
        for entry in answer:
            emit_to_caller("presence", entry)
        return {"results": answer}

    def local_connections_of(self, user_id: int) -> dict[int, set[str]]:
        return {user_id: self.local_connections().get(user_id, set())}
