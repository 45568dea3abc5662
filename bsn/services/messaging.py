"""Messaging: conversations, messages with a gap-free seq, idempotent sends, receipts, reactions.

Called alike by the REST blueprint, the /chat namespace and jobs. Realtime events go out only after
the transaction that makes them true has committed.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import redis
from flask import current_app
from sqlalchemy import and_, bindparam, delete, func, insert, or_, select, tuple_, update
from sqlalchemy.exc import IntegrityError

from bsn import groupcommit, realtime
from bsn.actors import Actor, Caller
from bsn.clock import now as clock_now
from bsn.dbtools import KeptConnection, Prepared, end_transaction, insert_ignore
from bsn.errors import Conflict, Forbidden, NotFound, ValidationError
from bsn.extensions import db, redis_store
from bsn.groupcommit import GroupCommit
from bsn.models import Conversation, ConversationMember, Message, MessageReaction, User
from bsn.outages import OUTAGES
from bsn.services import moderation, notifications, presence
from bsn.services.accounts import user_json

log = logging.getLogger(__name__)

CHAT = "/chat"
DIRECT, GROUP = "direct", "group"
MAX_GROUP_MEMBERS = 256
CHAT_SIDS = "chat:sids:{}"  # the /chat socket ids of a user, so new conversations can be joined live


def conversation_room(conversation_id: int) -> str:
    return f"conv:{conversation_id}"


# ---- conversations ----


def create_conversation(creator: Actor, user_ids: list[int], title: str | None = None) -> Conversation:
    """One other id: the direct chat of the pair (created once, returned ever after). More: a group chat."""
    others = sorted({uid for uid in user_ids if uid != creator.id})
    if not others:
        raise ValidationError(fields={"user_ids": ["Name at least one other user."]})
    if len(others) + 1 > MAX_GROUP_MEMBERS:
        raise ValidationError(fields={"user_ids": [f"At most {MAX_GROUP_MEMBERS} members."]})
    found = set(db.session.scalars(select(User.id).where(User.id.in_(others))))
    missing = [uid for uid in others if uid not in found]
    if missing:
        raise ValidationError(fields={"user_ids": [f"No such users: {missing}."]})
    _refuse_blocked(creator.id, others)
    if len(others) == 1 and not title:
        return _direct(creator.id, others[0])
    conversation = Conversation(kind=GROUP, title=title, created_by=creator.id)
    db.session.add(conversation)
    db.session.flush()
    db.session.add(ConversationMember(conversation_id=conversation.id, user_id=creator.id, role="admin"))
    for uid in others:
        db.session.add(ConversationMember(conversation_id=conversation.id, user_id=uid))
    db.session.commit()
    _announce_conversation(conversation, [creator.id, *others])
    return conversation


def _refuse_blocked(user_id: int, others) -> None:
    """Nobody is put in a conversation with someone who blocked them, or whom they blocked."""
    from bsn.services.users import blocked_between

    if any(blocked_between(user_id, other) for other in others):
        raise Forbidden("You cannot start a conversation with this user.", code="blocked")


def _direct(user_id: int, other_id: int) -> Conversation:
    key = f"{min(user_id, other_id)}:{max(user_id, other_id)}"
    existing = db.session.scalar(select(Conversation).where(Conversation.direct_key == key))
    if existing is not None:
        return existing
    conversation = Conversation(kind=DIRECT, direct_key=key, created_by=user_id)
    db.session.add(conversation)
    try:
        db.session.flush()
    except IntegrityError:
        # The other side created it at the same moment: theirs is the one.
        db.session.rollback()
        return db.session.scalar(select(Conversation).where(Conversation.direct_key == key))
    for uid in (user_id, other_id):
        db.session.add(ConversationMember(conversation_id=conversation.id, user_id=uid))
    db.session.commit()
    _announce_conversation(conversation, [user_id, other_id])
    return conversation


def _announce_conversation(conversation: Conversation, user_ids: list[int]) -> None:
    """Put the members' open /chat sockets, on any process, into the new room, and tell them."""
    room = conversation_room(conversation.id)
    manager = realtime.socket_manager()
    for uid in user_ids:
        for sid in redis_store.client.smembers(CHAT_SIDS.format(uid)):
            manager.enter_room(sid.decode(), CHAT, room)
        realtime.emit("conversation_created", {"conversation_id": conversation.id}, CHAT, realtime.user_room(uid))


def membership(actor: Actor, conversation_id: int) -> ConversationMember:
    """The caller's membership; 404 for a conversation that does not exist or that they are not in."""
    member = db.session.scalar(
        select(ConversationMember).where(
            ConversationMember.conversation_id == conversation_id, ConversationMember.user_id == actor.id
        )
    )
    if member is None:
        # Not revealing whether a conversation one is not in exists.
        raise NotFound("No such conversation.")
    return member


def conversation_ids(user_id: int) -> list[int]:
    return list(
        db.session.scalars(select(ConversationMember.conversation_id).where(ConversationMember.user_id == user_id))
    )


def add_members(actor: Actor, conversation_id: int, user_ids: list[int]) -> Conversation:
    me = membership(actor, conversation_id)
    conversation = me.conversation
    if conversation.kind != GROUP:
        raise Conflict("Direct chats have exactly two members.", code="direct_chat")
    if me.role != "admin":
        raise Forbidden("Only the chat's admins can add members.")
    found = set(db.session.scalars(select(User.id).where(User.id.in_(user_ids))))
    if set(user_ids) - found:
        raise ValidationError(fields={"user_ids": [f"No such users: {sorted(set(user_ids) - found)}."]})
    current = db.session.scalar(select(func.count()).where(ConversationMember.conversation_id == conversation_id))
    if current + len(set(user_ids)) > MAX_GROUP_MEMBERS:
        raise ValidationError(fields={"user_ids": [f"A group chat has at most {MAX_GROUP_MEMBERS} members."]})
    _refuse_blocked(actor.id, user_ids)
    insert_ignore(
        ConversationMember,
        [
            {
                "conversation_id": conversation_id,
                "user_id": uid,
                "role": "member",
                "last_read_seq": 0,
                "joined_at": clock_now(),
            }
            for uid in user_ids
        ],
        ["conversation_id", "user_id"],
    )
    db.session.commit()
    _announce_conversation(conversation, list(user_ids))
    return conversation


def remove_member(actor: Actor, conversation_id: int, user_id: int) -> None:
    """Admins remove anyone; anyone may leave."""
    me = membership(actor, conversation_id)
    if me.conversation.kind != GROUP:
        raise Conflict("Direct chats have exactly two members.", code="direct_chat")
    if user_id != actor.id and me.role != "admin":
        raise Forbidden("Only the chat's admins can remove members.")
    db.session.execute(
        delete(ConversationMember).where(
            ConversationMember.conversation_id == conversation_id, ConversationMember.user_id == user_id
        )
    )
    db.session.commit()
    room = conversation_room(conversation_id)
    manager = realtime.socket_manager()
    for sid in redis_store.client.smembers(CHAT_SIDS.format(user_id)):
        manager.leave_room(sid.decode(), CHAT, room)


def list_conversations(actor: Actor, limit: int, cursor: tuple[datetime, int] | None):
    """The caller's conversations by last activity, each with its last message and unread count.

    Three queries whatever the page size: the page, the last messages, the members.
    """
    activity = func.coalesce(Conversation.last_message_at, Conversation.created_at)
    stmt = (
        select(Conversation, ConversationMember.last_read_seq, activity.label("activity"))
        .join(ConversationMember, ConversationMember.conversation_id == Conversation.id)
        .where(ConversationMember.user_id == actor.id)
        .order_by(activity.desc(), Conversation.id.desc())
        .limit(limit + 1)
    )
    if cursor is not None:
        at, last_id = cursor
        stmt = stmt.where((activity < at) | (and_(activity == at, Conversation.id < last_id)))
    rows = db.session.execute(stmt).all()
    page = rows[:limit]
    last_messages = {}
    pairs = [(c.id, c.last_seq) for c, _, _ in page if c.last_seq]
    if pairs:
        conditions = [and_(Message.conversation_id == cid, Message.seq == seq) for cid, seq in pairs]
        for message in db.session.scalars(select(Message).where(or_(*conditions))):
            last_messages[message.conversation_id] = message
    senders = _users({m.sender_id for m in last_messages.values()})
    items = [
        {
            "conversation": conversation,
            "unread_count": max(0, conversation.last_seq - last_read),
            "last_read_seq": last_read,
            "last_message": present(last_messages[conversation.id], senders)
            if conversation.id in last_messages
            else None,
        }
        for conversation, last_read, _ in page
    ]
    next_cursor = (page[-1][2], page[-1][0].id) if len(rows) > limit else None
    return items, next_cursor


# ---- messages ----


# The send path's statements, built once on Core tables and run on the DBAPI cursor (dbtools.Prepared): a send
# runs each of them, and on an idle process SQLAlchemy's execute around them was most of a send's latency.
_conversations, _members, _messages, _users_table = (
    Conversation.__table__,
    ConversationMember.__table__,
    Message.__table__,
    User.__table__,
)


def _in(column, name: str, one: bool):
    # A batch of one conversation and one sender (the usual case) binds plain values: an expanding IN is
    # rewritten on every execution, and the send path runs these statements for every message.
    return column == bindparam(name) if one else column.in_(bindparam(name + "s", expanding=True))


@functools.cache
def _members_and_senders(one: bool) -> Prepared:
    """The members of these conversations with each one's kind, and the senders' public fields on their own rows
    (one statement for a whole batch of sends). Binds cid and uid, or (a batch of several) cids and uids.
    Rows: conversation_id, user_id, kind, username, display_name, avatar_url."""
    return Prepared(
        select(
            _members.c.conversation_id,
            _members.c.user_id,
            _conversations.c.kind,
            _users_table.c.username,
            _users_table.c.display_name,
            _users_table.c.avatar_url,
        )
        .select_from(
            _members.join(_conversations, _conversations.c.id == _members.c.conversation_id).outerjoin(
                _users_table, (_users_table.c.id == _members.c.user_id) & _in(_members.c.user_id, "uid", one)
            )
        )
        .where(_in(_members.c.conversation_id, "cid", one))
    )


@functools.cache
def _take_seqs(one: bool) -> Prepared:
    """Takes a conversation's next `n` seqs, locks its row until commit (so seqs have no gap, whoever sends at
    once), and checks again, inside the writing transaction, that every sender (uid, or uids) is still a member.
    Its one row holds the conversation's last seq now; no row: a sender is no longer a member."""
    return Prepared(
        update(_conversations)
        .where(
            _conversations.c.id == bindparam("cid"),
            select(func.count())
            .where(_members.c.conversation_id == bindparam("cid"), _in(_members.c.user_id, "uid", one))
            .scalar_subquery()
            == bindparam("senders"),
        )
        .values(
            last_seq=_conversations.c.last_seq + bindparam("n"),
            last_message_at=bindparam("at", type_=_conversations.c.last_message_at.type),
        )
        .returning(_conversations.c.last_seq)
    )


_READ_OWN = Prepared(
    update(_members)
    .where(_members.c.conversation_id == bindparam("cid"), _members.c.user_id == bindparam("uid"))
    .values(last_read_seq=bindparam("seq"))
)
# How many waiting sends one transaction stores at most (bsn/groupcommit.py): a batch holds the database's
# single writer (SQLite) and, on gevent, the whole process for as long as it runs.
SEND_BATCH = 100
_STORED = ("conversation_id", "seq", "sender_id", "body", "client_id", "attachments", "created_at")


@functools.cache
def _bind_names(k: int) -> tuple[str, ...]:
    """The bind names of the k-th message of a batch, made once: `<column>_<k>` for each column of _STORED."""
    return tuple(f"{c}_{k}" for c in _STORED)


@functools.lru_cache(maxsize=SEND_BATCH)
def _insert_messages(n: int) -> Prepared:
    """One INSERT of `n` messages, the k-th bound as _bind_names(k). Rows: id, conversation_id, seq;
    (conversation_id, seq) tells which id is whose, whatever order they come back in."""
    rows = [
        {c: bindparam(name, type_=_messages.c[c].type) for c, name in zip(_STORED, _bind_names(k), strict=True)}
        for k in range(n)
    ]
    return Prepared(
        insert(_messages).values(rows).returning(_messages.c.id, _messages.c.conversation_id, _messages.c.seq)
    )


# A batch is read again when a sender left a conversation between its read and its write; a conversation whose
# members keep changing faster than that gets its sends refused rather than retried without end.
SEND_PASSES = 5


@dataclass(eq=False, slots=True)
class Send:
    """One checked send waiting to be stored."""

    sender_id: int
    conversation_id: int
    body: str
    client_id: str | None
    attachments: list
    online_here: Collection[int]


def send_message(
    sender: Actor, conversation_id: int, body: str, client_id: str | None, attachments=None, online_here=()
) -> dict:
    """Store a message with the next seq of its conversation, then broadcast it.

    A client_id the sender used before returns the message stored the first time, so a retry
    (after a timeout, a reconnect, a crash) never makes a duplicate. `online_here`: user ids the caller
    knows to be connected to this very process (the chat namespace's sockets); presence is not asked
    about them. Concurrent sends of one process are stored together (`store_sends`), each answered alone.
    """
    body = body.strip()
    if not body and not attachments:
        raise ValidationError(fields={"body": ["A message needs text or an attachment."]})
    if len(body) > current_app.config["MESSAGE_MAX_LENGTH"]:
        raise ValidationError(fields={"body": [f"At most {current_app.config['MESSAGE_MAX_LENGTH']} characters."]})
    if body and moderation.screen(body) == moderation.HOLD:
        raise ValidationError("This message was not accepted by auto-moderation.", fields={"body": ["Not accepted."]})
    end_transaction()  # none of the caller's transaction stays open while its send waits its turn
    send = Send(sender.id, conversation_id, body, client_id, attachments or [], online_here)
    return _group_commit().submit(send)


def _group_commit() -> GroupCommit:
    return groupcommit.for_app("bsn_sends", store_sends, SEND_BATCH)


def store_sends(sends: Sequence[Send]) -> list:
    """Store checked sends in one transaction. One outcome each, in order: the message as sent to clients, or
    the error that send alone gets (NotFound, Forbidden). A client_id its sender used before, in an earlier
    batch or earlier in this one, gets the message stored the first time."""
    outcomes: list = [None] * len(sends)
    first: dict[tuple[int, str], int] = {}
    echoes: dict[int, int] = {}
    todo = []
    for i, send in enumerate(sends):
        key = (send.sender_id, send.client_id)
        if send.client_id is not None and key in first:
            echoes[i] = first[key]
        else:
            if send.client_id is not None:
                first[key] = i
            todo.append(i)
    try:
        _store_passes(sends, todo, outcomes)
    except OUTAGES:
        raise  # the database is away: every send of the batch would fail alone too
    except Exception:
        if len(todo) == 1:
            raise
        # One send the database refuses (bad data, a damaged conversation) must not fail the others with it.
        log.warning("a batch of %d sends failed; storing each alone", len(todo), exc_info=True)
        for i in todo:
            try:
                _store_passes(sends, [i], outcomes)
            except Exception as error:  # noqa: BLE001 - this send's own outcome
                outcomes[i] = error
    # An echo is answered what its first send got once that was stored; a refused first send does not refuse
    # it (it may name another conversation), so it is stored as a send of its own.
    again = [i for i, j in echoes.items() if isinstance(outcomes[j], BaseException)]
    for i, j in echoes.items():
        if i not in again:
            outcomes[i] = outcomes[j]
    if again:
        for i, outcome in zip(again, store_sends([sends[i] for i in again]), strict=True):
            outcomes[i] = outcome
    return outcomes


def _store_passes(sends: Sequence[Send], todo: list[int], outcomes: list) -> None:
    with _send_connection().use() as kept:
        for _ in range(SEND_PASSES):
            todo = _store_pass(kept, sends, todo, outcomes)
            if not todo:
                return
    for i in todo:
        outcomes[i] = Conflict("The conversation changed while the message was stored; send again.", code="retry")


def _send_connection() -> KeptConnection:
    """The connection this process's storing task writes sends with (one per process and app, as the task)."""
    app = current_app._get_current_object()
    kept = app.extensions.get("bsn_send_connection")
    if kept is None:
        kept = app.extensions.setdefault("bsn_send_connection", KeptConnection(db.engine))
    return kept


def _end(kept) -> None:
    """End the pass's transactions: on the kept connection, and the session's (block checks, notifications)."""
    kept.rollback()
    end_transaction()


def _store_pass(kept, sends: Sequence[Send], todo: list[int], outcomes: list) -> list[int]:
    """Store sends[i] for each i in `todo`, setting outcomes[i]; returns the ones to try again.

    Read and written on `kept` (_send_connection); a pass that notifies offline members writes through the ORM
    session instead, in which notifications.notify adds its rows and after-commit pushes."""
    if not todo:
        return []
    _end(kept)  # what follows starts from a fresh transaction
    cids, uids = sorted({sends[i].conversation_id for i in todo}), sorted({sends[i].sender_id for i in todo})
    one = len(cids) == len(uids) == 1
    params = {"cid": cids[0], "uid": uids[0]} if one else {"cids": cids, "uids": uids}
    members: dict[int, set[int]] = {}
    kinds: dict[int, str] = {}
    authors: dict[int, dict] = {}
    for cid, uid, kind, username, display_name, avatar_url in _members_and_senders(one).rows(kept, params):
        members.setdefault(cid, set()).add(uid)
        kinds[cid] = kind
        if username is not None:
            authors[uid] = dict(id=uid, username=username, display_name=display_name, avatar_url=avatar_url)
    ready: list[int] = []
    for i in todo:
        send = sends[i]
        if send.sender_id not in members.get(send.conversation_id, ()):
            # Not revealing whether a conversation one is not in exists.
            outcomes[i] = NotFound("No such conversation.")
            continue
        ready.append(i)
    if not ready:
        _end(kept)
        return []
    elsewhere = {
        i: [
            uid
            for uid in members[sends[i].conversation_id]
            if uid != sends[i].sender_id and uid not in sends[i].online_here
        ]
        for i in ready
    }
    asked = sorted({uid for uids in elsewhere.values() for uid in uids})
    online: set[int] = set()
    if asked:
        # Ends the read before presence is asked of Redis: no transaction (nor SQLite turn) waits on the network.
        # With every member connected here there is nothing to ask, and the write continues this transaction.
        _end(kept)
        online = _online(asked)
    offline = {i: [uid for uid in elsewhere[i] if uid not in online] for i in ready}
    notifying = any(offline.values())
    at = clock_now()
    by_conversation: dict[int, list[int]] = {}
    for i in ready:
        by_conversation.setdefault(sends[i].conversation_id, []).append(i)
    seqs: dict[int, int] = {}
    try:
        connection = db.session.connection() if notifying else kept
        for conversation_id in sorted(by_conversation):  # always in the same order: no deadlock between batches
            batch = by_conversation[conversation_id]
            senders = sorted({sends[i].sender_id for i in batch})
            alone = len(senders) == 1
            params = {"cid": conversation_id, "senders": len(senders), "n": len(batch), "at": at}
            params.update({"uid": senders[0]} if alone else {"uids": senders})
            taken = _take_seqs(alone).rows(connection, params)
            if not taken:
                # A sender left (or the conversation went) since the read above: read again.
                _end(kept)
                return ready
            last = taken[0][0]
            for k, i in enumerate(batch):
                seqs[i] = last - len(batch) + 1 + k
        # Blocks are checked under the seq lock, as the membership is: a block made meanwhile is not missed.
        refused = {}
        for i in ready:
            send = sends[i]
            if kinds[send.conversation_id] == DIRECT:
                try:
                    _refuse_blocked(send.sender_id, members[send.conversation_id] - {send.sender_id})
                except Forbidden as error:
                    refused[i] = error
        if refused:
            # Their seqs are given back by the rollback; the others are stored by the next pass.
            _end(kept)
            for i, error in refused.items():
                outcomes[i] = error
            return [i for i in ready if i not in refused]
        values = {}
        for k, i in enumerate(ready):
            send = sends[i]
            row = (send.conversation_id, seqs[i], send.sender_id, send.body, send.client_id, send.attachments, at)
            values.update(zip(_bind_names(k), row, strict=True))
        ids = {(cid, seq): id_ for id_, cid, seq in _insert_messages(len(ready)).rows(connection, values)}
        # Built before the commit, from what is in hand: nothing that could fail runs once the messages are stored.
        stored_messages = {
            i: {
                "id": ids[(sends[i].conversation_id, seqs[i])],
                "conversation_id": sends[i].conversation_id,
                "seq": seqs[i],
                "sender": authors.get(sends[i].sender_id),  # None, as `present` shows a user gone
                "body": sends[i].body,
                "client_id": sends[i].client_id,
                "attachments": sends[i].attachments,
                "reactions": [],
                "created_at": at,
                "edited_at": None,
                "deleted": False,
            }
            for i in ready
        }
        read_marks: dict[tuple[int, int], int] = {}
        for i in ready:
            key = (sends[i].conversation_id, sends[i].sender_id)
            read_marks[key] = max(read_marks.get(key, 0), seqs[i])
        _READ_OWN.run_many(connection, [{"cid": cid, "uid": uid, "seq": seq} for (cid, uid), seq in read_marks.items()])
        for i, message in stored_messages.items():
            data = {"conversation_id": message["conversation_id"], "message_id": message["id"], "seq": message["seq"]}
            for user_id in offline[i]:
                notifications.notify(user_id, "message", sends[i].sender_id, data)
        if notifying:
            db.session.commit()
        else:
            kept.commit()
            end_transaction()  # the block checks' reads
    except IntegrityError as error:
        # A reused client_id fails on the unique index: cheaper than looking for it before every send.
        _end(kept)
        return _answer_earlier(sends, ready, outcomes, error)
    except Exception:
        _end(kept)
        raise
    for i, data in stored_messages.items():
        outcomes[i] = data
        realtime.emit("new_message", data, CHAT, conversation_room(data["conversation_id"]))
    return []


def _answer_earlier(sends: Sequence[Send], ready: list[int], outcomes: list, error: IntegrityError) -> list[int]:
    """After a batch failed on the client_id index: the sends whose client_id is taken get the message stored
    the first time (if they can still read it), and the others are tried again."""
    keys = {(sends[i].sender_id, sends[i].client_id) for i in ready if sends[i].client_id is not None}
    earlier = {}
    if keys:
        rows = db.session.scalars(select(Message).where(tuple_(Message.sender_id, Message.client_id).in_(keys)))
        earlier = {(m.sender_id, m.client_id): m for m in rows}
    if not earlier:
        raise error  # not a client_id: nothing to answer instead
    senders = _users({sender_id for sender_id, _ in earlier})
    again = []
    for i in ready:
        message = earlier.get((sends[i].sender_id, sends[i].client_id))
        if message is None:
            again.append(i)
            continue
        try:
            membership(Caller(sends[i].sender_id), message.conversation_id)
            outcomes[i] = present(message, senders)
        except NotFound as refused:
            outcomes[i] = refused
    db.session.rollback()
    return again


def _online(user_ids: list[int]) -> set[int]:
    """Which of these users have a live connection: asked of Redis before the write transaction, because no
    transaction may wait on the network while it holds a conversation row."""
    try:
        return presence.online_among(user_ids)
    except redis.RedisError:
        # Storing a message never needs Redis; while presence is unknown, everyone gets the notification.
        log.warning("presence unavailable; notifying every other member of %d conversations' sends", len(user_ids))
        return set()


def messages(actor: Actor, conversation_id: int, *, after_seq=None, before_seq=None, limit: int = 50) -> dict:
    """Messages by seq: after `after_seq` ascending (catching up), or before `before_seq` descending (history)."""
    membership(actor, conversation_id)
    stmt = select(Message).where(Message.conversation_id == conversation_id)
    if after_seq is not None:
        stmt = stmt.where(Message.seq > after_seq).order_by(Message.seq.asc())
    else:
        if before_seq is not None:
            stmt = stmt.where(Message.seq < before_seq)
        stmt = stmt.order_by(Message.seq.desc())
    rows = db.session.scalars(stmt.limit(limit + 1)).all()
    page = rows[:limit]
    senders = _users({m.sender_id for m in page})
    reactions = _reactions([m.id for m in page])
    return {
        "results": [present(m, senders, reactions.get(m.id, [])) for m in page],
        "has_more": len(rows) > limit,
    }


def sync(actor: Actor, conversation_id: int, after_seq: int) -> dict:
    """Everything after `after_seq`, in order: what a reconnecting client missed (`has_more`: ask again)."""
    return messages(actor, conversation_id, after_seq=after_seq, limit=current_app.config["SYNC_BATCH"])


def edit_message(actor: Actor, message_id: int, body: str) -> dict:
    message = _own_message(actor, message_id)
    window = timedelta(seconds=current_app.config["MESSAGE_EDIT_WINDOW"])
    if clock_now() - message.created_at > window:
        raise Conflict("This message can no longer be edited.", code="edit_window_passed")
    body = body.strip()
    if not body:
        raise ValidationError(fields={"body": ["Must not be empty."]})
    if moderation.screen(body) == moderation.HOLD:
        raise ValidationError("This message was not accepted by auto-moderation.", fields={"body": ["Not accepted."]})
    message.body, message.edited_at = body, clock_now()
    db.session.commit()
    data = present(message, _users({actor.id}))
    realtime.emit("message_edited", data, CHAT, conversation_room(message.conversation_id))
    return data


def delete_message(actor: Actor, message_id: int) -> dict:
    """A tombstone stays in place, so seq stays gap-free for every client."""
    message = _own_message(actor, message_id)
    message.body, message.attachments, message.deleted_at = "", [], clock_now()
    db.session.commit()
    data = present(message, _users({actor.id}))
    realtime.emit("message_deleted", data, CHAT, conversation_room(message.conversation_id))
    return data


def _own_message(actor: Actor, message_id: int) -> Message:
    message = _visible_message(actor, message_id)
    if message.sender_id != actor.id:
        raise Forbidden("Only the sender can change a message.")
    if message.deleted_at is not None:
        raise Conflict("This message was deleted.", code="message_deleted")
    return message


def _visible_message(actor: Actor, message_id: int) -> Message:
    message = db.session.get(Message, message_id)
    if message is None:
        raise NotFound("No such message.")
    membership(actor, message.conversation_id)
    return message


def seq_of(actor: Actor, message_id: int, conversation_id: int) -> int:
    message = _visible_message(actor, message_id)
    if message.conversation_id != conversation_id:
        raise ValidationError(fields={"message_id": ["Not a message of this conversation."]})
    return message.seq


def mark_read(actor: Actor, conversation_id: int, seq: int | None = None) -> dict:
    """Move the caller's read marker forward (never back); members get a read receipt."""
    member = membership(actor, conversation_id)
    last_seq = member.conversation.last_seq
    target = last_seq if seq is None else min(seq, last_seq)
    if target > member.last_read_seq:
        db.session.execute(
            update(ConversationMember)
            .where(ConversationMember.id == member.id, ConversationMember.last_read_seq < target)
            .values(last_read_seq=target)
        )
        db.session.commit()
        realtime.emit(
            "read_receipt",
            {"conversation_id": conversation_id, "user_id": actor.id, "seq": target},
            CHAT,
            conversation_room(conversation_id),
        )
    return {"conversation_id": conversation_id, "last_read_seq": max(target, member.last_read_seq)}


def react(actor: Actor, message_id: int, emoji: str) -> dict:
    """One reaction per user and message: the same emoji again removes it, another replaces it."""
    message = _visible_message(actor, message_id)
    current = db.session.scalar(
        select(MessageReaction).where(MessageReaction.message_id == message_id, MessageReaction.user_id == actor.id)
    )
    if current is not None and current.emoji == emoji:
        db.session.delete(current)
        emoji_now = None
    elif current is not None:
        current.emoji, emoji_now = emoji, emoji
    else:
        db.session.add(MessageReaction(message_id=message_id, user_id=actor.id, emoji=emoji))
        emoji_now = emoji
    try:
        db.session.commit()
    except IntegrityError:
        # The same user's concurrent reaction won: answer what is stored, and announce nothing.
        db.session.rollback()
        emoji_now = db.session.scalar(
            select(MessageReaction.emoji).where(
                MessageReaction.message_id == message_id, MessageReaction.user_id == actor.id
            )
        )
        return {
            "message_id": message_id,
            "conversation_id": message.conversation_id,
            "user_id": actor.id,
            "emoji": emoji_now,
        }
    data = {
        "message_id": message_id,
        "conversation_id": message.conversation_id,
        "user_id": actor.id,
        "emoji": emoji_now,
    }
    realtime.emit("reaction", data, CHAT, conversation_room(message.conversation_id))
    return data


def unreact(actor: Actor, message_id: int) -> dict:
    message = _visible_message(actor, message_id)
    db.session.execute(
        delete(MessageReaction).where(MessageReaction.message_id == message_id, MessageReaction.user_id == actor.id)
    )
    db.session.commit()
    data = {"message_id": message_id, "conversation_id": message.conversation_id, "user_id": actor.id, "emoji": None}
    realtime.emit("reaction", data, CHAT, conversation_room(message.conversation_id))
    return data


# ---- presentation helpers (one query for all senders, one for all reactions) ----


def _users(ids) -> dict[int, User]:
    ids = {i for i in ids if i is not None}
    return {u.id: u for u in db.session.scalars(select(User).where(User.id.in_(ids)))} if ids else {}


def _reactions(message_ids: list[int]) -> dict[int, list[dict]]:
    result: dict[int, list[dict]] = {}
    if message_ids:
        rows = db.session.scalars(select(MessageReaction).where(MessageReaction.message_id.in_(message_ids)))
        for reaction in rows:
            result.setdefault(reaction.message_id, []).append({"user_id": reaction.user_id, "emoji": reaction.emoji})
    return result


def present(message: Message, senders: dict[int, User], reactions: list[dict] | None = None) -> dict:
    return {
        "id": message.id,
        "conversation_id": message.conversation_id,
        "seq": message.seq,
        "sender": user_json(senders.get(message.sender_id)),
        "body": message.body,
        "client_id": message.client_id,
        "attachments": message.attachments,
        "reactions": reactions or [],
        "created_at": message.created_at,
        "edited_at": message.edited_at,
        "deleted": message.deleted_at is not None,
    }
