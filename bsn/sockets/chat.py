"""The /chat namespace: send, typing, read receipts, reactions, and sync after a reconnect."""

from __future__ import annotations

import threading
import time

from flask import current_app, request
from flask_socketio import join_room

from bsn.actors import Caller
from bsn.errors import ServiceUnavailable
from bsn.extensions import db, redis_store, socketio
from bsn.realtime import jsonable
from bsn.schemas.messaging import JoinPayload, ReactPayload, ReadPayload, SocketSendSchema, SyncPayload, TypingPayload
from bsn.services import messaging
from bsn.sockets.base import BSNNamespace, emit_to_caller

# A typing "true" is passed on at most this often per user and conversation; renewals in between
# only push its expiry back.
TYPING_THROTTLE = 2.0


class ChatNamespace(BSNNamespace):
    schemas = {
        "join": JoinPayload,
        "send_message": SocketSendSchema,
        "typing": TypingPayload,
        "read": ReadPayload,
        "react": ReactPayload,
        "sync": SyncPayload,
    }

    def __init__(self) -> None:
        super().__init__(messaging.CHAT)
        # (user id, conversation id) -> [last renewal, last broadcast, sid]; this process's typers only
        self._typing: dict[tuple[int, int], list] = {}
        self._typing_lock = threading.Lock()
        self._waiting = 0  # sends of this process not yet answered
        self._waiting_lock = threading.Lock()

    def connected(self, caller: Caller) -> None:
        for conversation_id in messaging.conversation_ids(caller.id):
            join_room(messaging.conversation_room(conversation_id))
        db.session.rollback()  # no read transaction held across the Redis call
        redis_store.client.sadd(messaging.CHAT_SIDS.format(caller.id), request.sid)

    def disconnected(self, caller: Caller) -> None:
        redis_store.client.srem(messaging.CHAT_SIDS.format(caller.id), request.sid)
        for key in [k for k, v in self._typing.items() if k[0] == caller.id and v[2] == request.sid]:
            self._stop_typing(key)

    def on_join(self, caller, payload):
        messaging.membership(caller, payload["conversation_id"])
        join_room(messaging.conversation_room(payload["conversation_id"]))
        return {"ok": True, "conversation_id": payload["conversation_id"]}

    def on_send_message(self, caller, payload):
        # Concurrent sends are stored together, one transaction for a batch (messaging.send_message). Under an
        # overload the queue is still bounded: past CHAT_MAX_WAITING_SENDS a send is refused before anything is
        # stored, and the client, told so, resends with its client_id; waiting without end would only grow memory.
        with self._waiting_lock:
            self._refuse_if_overloaded()
            self._waiting += 1
        try:
            message = messaging.send_message(
                caller,
                payload["conversation_id"],
                payload["body"],
                payload.get("client_id"),
                payload.get("attachments"),
                # Members with a socket here are online without asking Redis: one round trip less a send.
                online_here=self.users_here,
            )
        finally:
            with self._waiting_lock:
                self._waiting -= 1
        key = (caller.id, payload["conversation_id"])
        if key in self._typing:
            self._stop_typing(key)
        return jsonable(message)

    def admit(self, event: str) -> None:
        # Under an overload, a send that will be refused is refused first: its rate-limit round trip and
        # validation would only take CPU from the sends being stored.
        if event == "send_message":
            self._refuse_if_overloaded()

    def _refuse_if_overloaded(self) -> None:
        if self._waiting >= current_app.config["CHAT_MAX_WAITING_SENDS"]:
            raise ServiceUnavailable("Too many messages are waiting to be stored; send again shortly.")

    def on_typing(self, caller, payload):
        conversation_id = payload["conversation_id"]
        messaging.membership(caller, conversation_id)
        key = (caller.id, conversation_id)
        if not payload["is_typing"]:
            if key in self._typing:
                self._stop_typing(key)
            return {"ok": True}
        now = time.monotonic()
        with self._typing_lock:
            state = self._typing.get(key)
            fresh = state is None
            if fresh:
                state = self._typing[key] = [now, 0.0, request.sid]
            state[0] = now
            broadcast = now - state[1] >= TYPING_THROTTLE
            if broadcast:
                state[1] = now
        if broadcast:
            self._broadcast_typing(caller.id, conversation_id, True, request.sid)
        if fresh:
            socketio.start_background_task(self._expire_typing, current_app._get_current_object(), key)
        return {"ok": True}

    def _expire_typing(self, app, key) -> None:
        """Typing ends by itself TYPING_TIMEOUT seconds after its last renewal."""
        timeout = app.config["TYPING_TIMEOUT"]
        while True:
            with self._typing_lock:
                state = self._typing.get(key)
                if state is None:
                    return
                remaining = state[0] + timeout - time.monotonic()
            if remaining <= 0:
                with app.app_context():
                    self._stop_typing(key)
                return
            socketio.sleep(remaining)

    def _stop_typing(self, key) -> None:
        with self._typing_lock:
            state = self._typing.pop(key, None)
        if state is not None:
            self._broadcast_typing(key[0], key[1], False, state[2])

    def _broadcast_typing(self, user_id: int, conversation_id: int, is_typing: bool, typer_sid: str) -> None:
        # To the others: the typer's own socket is skipped.
        socketio.emit(
            "typing",
            {"conversation_id": conversation_id, "user_id": user_id, "is_typing": is_typing},
            namespace=self.namespace,
            to=messaging.conversation_room(conversation_id),
            skip_sid=typer_sid,
        )

    def on_read(self, caller, payload):
        seq = payload.get("seq")
        if seq is None and payload.get("message_id") is not None:
            seq = messaging.seq_of(caller, payload["message_id"], payload["conversation_id"])
        return messaging.mark_read(caller, payload["conversation_id"], seq)

    def on_react(self, caller, payload):
        return messaging.react(caller, payload["message_id"], payload["emoji"])

    def on_sync(self, caller, payload):
        return jsonable(messaging.sync(caller, payload["conversation_id"], payload["after_seq"]))

    def on_ping(self, caller, payload):
        emit_to_caller("pong", {"ts": time.time()})
        return {"ok": True}
