"""Messaging over REST: conversations, seq, idempotent sends, history both ways, edits, receipts, reactions."""

from datetime import UTC, datetime

import pytest

from bsn.clock import clock
from tests.conftest import auth


@pytest.fixture
def trio(make_user):
    return [make_user(name) for name in ("ann", "ben", "cid")]


def create(client, token, user_ids, title=None):
    body = {"user_ids": user_ids} | ({"title": title} if title else {})
    return client.post("/api/conversations/", json=body, headers=auth(token))


def send(client, token, conversation_id, body, client_id=None):
    payload = {"body": body} | ({"client_id": client_id} if client_id else {})
    return client.post(f"/api/conversations/{conversation_id}/messages/", json=payload, headers=auth(token))


def test_a_direct_chat_is_one_per_pair(client, trio):
    (ann_id, ann), (ben_id, ben), _ = trio
    first = create(client, ann, [ben_id])
    assert first.status_code == 201 and first.get_json()["kind"] == "direct"
    again = create(client, ben, [ann_id]).get_json()
    assert again["id"] == first.get_json()["id"]
    assert sorted(m["user_id"] for m in again["members"]) == sorted([ann_id, ben_id])


def test_a_group_chat_with_admins(client, trio, make_user):
    (ann_id, ann), (ben_id, ben), (cid_id, cid) = trio
    group = create(client, ann, [ben_id, cid_id], title="Trip").get_json()
    assert group["kind"] == "group" and group["title"] == "Trip"
    roles = {m["user_id"]: m["role"] for m in group["members"]}
    assert roles == {ann_id: "admin", ben_id: "member", cid_id: "member"}
    dan_id, dan = make_user("dan")
    url = f"/api/conversations/{group['id']}/members/"
    assert client.post(url, json={"user_ids": [dan_id]}, headers=auth(ben)).status_code == 403
    assert client.post(url, json={"user_ids": [dan_id]}, headers=auth(ann)).status_code == 200
    assert send(client, dan, group["id"], "hi all").status_code == 201
    assert client.delete(f"{url}{dan_id}/", headers=auth(ben)).status_code == 403
    assert client.delete(f"{url}{cid_id}/", headers=auth(cid)).status_code == 204  # leaving
    assert client.delete(f"{url}{dan_id}/", headers=auth(ann)).status_code == 204
    assert send(client, dan, group["id"], "still here?").status_code == 404


def test_bad_conversations_are_refused(client, trio):
    (ann_id, ann), _, _ = trio
    assert create(client, ann, [ann_id]).status_code == 422
    assert create(client, ann, [999_999]).status_code == 422
    assert create(client, ann, []).status_code == 422
    assert client.post("/api/conversations/", json={"user_ids": "x"}, headers=auth(ann)).status_code == 422


def test_messages_get_gap_free_seq_and_only_members_read_or_write(client, trio):
    (ann_id, ann), (ben_id, ben), (_cid_id, cid) = trio
    chat = create(client, ann, [ben_id]).get_json()["id"]
    seqs = [send(client, token, chat, f"m{i}").get_json()["seq"] for i, token in enumerate([ann, ben, ann, ben])]
    assert seqs == [1, 2, 3, 4]
    assert send(client, cid, chat, "let me in").status_code == 404
    assert client.get(f"/api/conversations/{chat}/messages/", headers=auth(cid)).status_code == 404
    message = send(client, ann, chat, "hello <b>you</b>").get_json()
    assert message["body"] == "hello <b>you</b>"  # stored as typed; clients insert it as text
    assert message["sender"]["id"] == ann_id and message["created_at"].endswith("Z")
    # The answer is built from what the send had in hand: it must present the message as a later read does.
    stored = client.get(f"/api/conversations/{chat}/messages/", headers=auth(ben)).get_json()["results"][0]
    assert message == stored


def test_a_retried_client_id_stores_one_message(client, trio):
    (_, ann), (ben_id, _), _ = trio
    chat = create(client, ann, [ben_id]).get_json()["id"]
    first = send(client, ann, chat, "once", client_id="c-1").get_json()
    retry = send(client, ann, chat, "once", client_id="c-1").get_json()
    assert retry["id"] == first["id"] and retry["seq"] == first["seq"] == 1
    assert send(client, ann, chat, "next", client_id="c-2").get_json()["seq"] == 2
    page = client.get(f"/api/conversations/{chat}/messages/", headers=auth(ann)).get_json()
    assert [m["client_id"] for m in page["results"]] == ["c-2", "c-1"]


def test_history_in_both_directions(client, trio):
    (_, ann), (ben_id, _), _ = trio
    chat = create(client, ann, [ben_id]).get_json()["id"]
    for i in range(7):
        send(client, ann, chat, f"m{i}")
    url = f"/api/conversations/{chat}/messages/"
    newest = client.get(f"{url}?limit=3", headers=auth(ann)).get_json()
    assert [m["seq"] for m in newest["results"]] == [7, 6, 5] and newest["has_more"]
    older = client.get(f"{url}?limit=3&before_seq=5", headers=auth(ann)).get_json()
    assert [m["seq"] for m in older["results"]] == [4, 3, 2]
    after = client.get(f"{url}?after_seq=4", headers=auth(ann)).get_json()
    assert [m["seq"] for m in after["results"]] == [5, 6, 7] and not after["has_more"]
    assert client.get(f"{url}?after_seq=1&before_seq=3", headers=auth(ann)).status_code == 422
    assert client.get(f"{url}?limit=0", headers=auth(ann)).status_code == 422


def test_edit_within_the_window_and_delete_leaves_a_tombstone(client, trio, app):
    (_, ann), (ben_id, ben), _ = trio
    clock.freeze(datetime(2026, 8, 1, 10, 0, tzinfo=UTC))
    chat = create(client, ann, [ben_id]).get_json()["id"]
    message = send(client, ann, chat, "helo").get_json()
    assert client.patch(f"/api/messages/{message['id']}/", json={"body": "x"}, headers=auth(ben)).status_code == 403
    edited = client.patch(f"/api/messages/{message['id']}/", json={"body": "hello"}, headers=auth(ann)).get_json()
    assert edited["body"] == "hello" and edited["edited_at"]
    clock.advance(seconds=app.config["MESSAGE_EDIT_WINDOW"] + 1)
    late = client.patch(f"/api/messages/{message['id']}/", json={"body": "hi"}, headers=auth(ann))
    assert late.status_code == 409 and late.get_json()["error"]["code"] == "edit_window_passed"
    send(client, ben, chat, "after")
    deleted = client.delete(f"/api/messages/{message['id']}/", headers=auth(ann)).get_json()
    assert deleted["deleted"] and deleted["body"] == ""
    page = client.get(f"/api/conversations/{chat}/messages/?after_seq=0", headers=auth(ben)).get_json()["results"]
    assert [(m["seq"], m["deleted"]) for m in page] == [(1, True), (2, False)]


def test_conversations_list_by_activity_with_last_message_and_unread(client, trio):
    (_ann_id, ann), (ben_id, ben), (cid_id, cid) = trio
    with_ben = create(client, ann, [ben_id]).get_json()["id"]
    with_cid = create(client, ann, [cid_id]).get_json()["id"]
    send(client, ben, with_ben, "one")
    send(client, ben, with_ben, "two")
    send(client, cid, with_cid, "three")
    listing = client.get("/api/conversations/", headers=auth(ann)).get_json()["results"]
    assert [item["conversation"]["id"] for item in listing] == [with_cid, with_ben]
    assert [item["unread_count"] for item in listing] == [1, 2]
    assert listing[1]["last_message"]["body"] == "two"
    client.post(f"/api/conversations/{with_ben}/read/", json={}, headers=auth(ann))
    listing = client.get("/api/conversations/?limit=1", headers=auth(ann)).get_json()
    assert len(listing["results"]) == 1 and listing["next_cursor"]
    rest = client.get(f"/api/conversations/?cursor={listing['next_cursor']}", headers=auth(ann)).get_json()
    assert [(i["conversation"]["id"], i["unread_count"]) for i in rest["results"]] == [(with_ben, 0)]


def test_read_markers_only_move_forward(client, trio):
    (_, ann), (ben_id, ben), _ = trio
    chat = create(client, ann, [ben_id]).get_json()["id"]
    for i in range(3):
        send(client, ann, chat, f"m{i}")
    url = f"/api/conversations/{chat}/read/"
    assert client.post(url, json={"seq": 2}, headers=auth(ben)).get_json()["last_read_seq"] == 2
    assert client.post(url, json={"seq": 1}, headers=auth(ben)).get_json()["last_read_seq"] == 2
    assert client.post(url, json={"seq": 99}, headers=auth(ben)).get_json()["last_read_seq"] == 3


def test_reactions_toggle_one_emoji_per_user(client, trio):
    (_, ann), (ben_id, ben), (_, cid) = trio
    chat = create(client, ann, [ben_id]).get_json()["id"]
    message = send(client, ann, chat, "react to me").get_json()["id"]
    url = f"/api/messages/{message}/reactions/"
    assert client.post(url, json={"emoji": "👍"}, headers=auth(ben)).get_json()["emoji"] == "👍"
    assert client.post(url, json={"emoji": "🎉"}, headers=auth(ben)).get_json()["emoji"] == "🎉"
    page = client.get(f"/api/conversations/{chat}/messages/", headers=auth(ann)).get_json()["results"]
    assert page[0]["reactions"] == [{"user_id": ben_id, "emoji": "🎉"}]
    assert client.post(url, json={"emoji": "🎉"}, headers=auth(ben)).get_json()["emoji"] is None
    assert client.post(url, json={"emoji": "👍"}, headers=auth(cid)).status_code == 404
    client.post(url, json={"emoji": "👍"}, headers=auth(ben))
    assert client.delete(url, headers=auth(ben)).get_json()["emoji"] is None


def test_message_size_and_body_are_validated(client, trio, app):
    (_, ann), (ben_id, _), _ = trio
    chat = create(client, ann, [ben_id]).get_json()["id"]
    assert send(client, ann, chat, "   ").status_code == 422
    assert send(client, ann, chat, "x" * (app.config["MESSAGE_MAX_LENGTH"] + 1)).status_code == 422
    too_long_id = client.post(
        f"/api/conversations/{chat}/messages/", json={"body": "x", "client_id": "c" * 65}, headers=auth(ann)
    )
    assert too_long_id.status_code == 422


def test_list_queries_do_not_grow_with_the_page(client, trio, app, make_user):
    from tests.helpers import count_queries

    (_, ann), (ben_id, ben), _ = trio
    chat = create(client, ann, [ben_id]).get_json()["id"]

    def count(path):
        return count_queries(app, client, path, ann)

    send(client, ben, chat, "one")
    few = count(f"/api/conversations/{chat}/messages/"), count("/api/conversations/")
    for i in range(12):
        send(client, ben if i % 2 else ann, chat, f"m{i}")
        other_id, other = make_user()
        send(client, other, create(client, ann, [other_id]).get_json()["id"], "x")
    many = count(f"/api/conversations/{chat}/messages/"), count("/api/conversations/")
    assert many == few


def test_concurrent_senders_get_gap_free_increasing_seqs(app, client, trio):
    from tests.test_concurrency import all_at_once

    (_, ann), (ben_id, ben), _ = trio
    chat = create(client, ann, [ben_id]).get_json()["id"]

    def burst(c, i):
        token = ann if i % 2 else ben
        return [send(c, token, chat, f"t{i}-{n}", client_id=f"t{i}-{n}").get_json()["seq"] for n in range(5)]

    per_thread = all_at_once(app, 8, burst)
    assert sorted(seq for seqs in per_thread for seq in seqs) == list(range(1, 41))
    assert all(seqs == sorted(seqs) for seqs in per_thread)  # each sender's own messages in order
    page = client.get(f"/api/conversations/{chat}/messages/?after_seq=0&limit=100", headers=auth(ann)).get_json()
    assert [m["seq"] for m in page["results"]] == list(range(1, 41))


def test_blocked_users_cannot_open_a_chat_or_write(client, trio):
    (ann_id, ann), (ben_id, ben), _ = trio
    chat = create(client, ann, [ben_id]).get_json()["id"]
    client.post(f"/api/users/{ben_id}/block/", headers=auth(ann))
    assert send(client, ben, chat, "let me talk").status_code == 403
    assert create(client, ben, [ann_id]).status_code == 403


def test_edits_pass_auto_moderation(client, trio, app, monkeypatch):
    (_, ann), (ben_id, _), _ = trio
    monkeypatch.setitem(app.config, "MODERATION_BLOCKED_WORDS", ["scam"])
    chat = create(client, ann, [ben_id]).get_json()["id"]
    message = send(client, ann, chat, "fine").get_json()
    edited = client.patch(f"/api/messages/{message['id']}/", json={"body": "a scam"}, headers=auth(ann))
    assert edited.status_code == 422 and edited.get_json()["error"]["code"] == "content_blocked"


def test_message_pages_follow_their_cursor_both_ways(client, trio):
    (_, ann), (ben_id, _), _ = trio
    chat = create(client, ann, [ben_id]).get_json()["id"]
    for i in range(5):
        send(client, ann, chat, f"m{i}")
    url = f"/api/conversations/{chat}/messages/"

    def walk(first):
        seqs, page = [], client.get(first, headers=auth(ann)).get_json()
        while True:
            seqs += [m["seq"] for m in page["results"]]
            if not page["next_cursor"]:
                return seqs
            page = client.get(f"{url}?limit=2&cursor={page['next_cursor']}", headers=auth(ann)).get_json()

    assert walk(f"{url}?limit=2") == [5, 4, 3, 2, 1]
    assert walk(f"{url}?limit=2&after_seq=0") == [1, 2, 3, 4, 5]
    assert client.get(f"{url}?cursor=WyJzaWRld2F5cyIsMV0", headers=auth(ann)).status_code == 422


# ---- sends stored together (bsn/groupcommit.py): each answered as if alone ----


def _sends(app, *sends):
    """Store these (sender id, conversation id, body, client_id) as one batch, in one app context."""
    from bsn.services import messaging

    with app.app_context():
        return messaging.store_sends(
            [messaging.Send(uid, cid, body, client_id, [], ()) for uid, cid, body, client_id in sends]
        )


def test_one_batch_answers_each_send_alone_in_one_commit(app, client, trio, make_user, monkeypatch):
    from sqlalchemy import event

    from bsn import realtime
    from bsn.errors import Forbidden, NotFound
    from bsn.extensions import db

    (ann_id, ann), (ben_id, ben), (cid_id, cid) = trio
    dan_id, _ = make_user("dan")
    group = create(client, ann, [ben_id, cid_id], title="Trip").get_json()["id"]
    direct = create(client, ann, [ben_id]).get_json()["id"]
    blocked = create(client, cid, [ann_id]).get_json()["id"]
    earlier = send(client, cid, group, "said before", client_id="c-old").get_json()
    client.post(f"/api/users/{ann_id}/block/", headers=auth(cid))
    sent = []
    monkeypatch.setattr(realtime, "emit", lambda event, data, namespace, room: sent.append((room, data["seq"])))
    commits = []

    def counted(connection):
        commits.append(connection)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "commit", counted)
    try:
        outcomes = _sends(
            app,
            (ann_id, group, "one", "a-1"),
            (dan_id, group, "not a member", "d-1"),
            (ben_id, group, "two", None),
            (ann_id, group, "one again", "a-1"),  # the same client_id in the same batch
            (ann_id, blocked, "are you there", "a-2"),
            (cid_id, group, "said again", "c-old"),  # a client_id of an earlier batch
            (ann_id, direct, "hi ben", "a-3"),
        )
    finally:
        event.remove(engine, "commit", counted)
    one, outsider, two, one_again, refused, retried, hi = outcomes
    assert isinstance(outsider, NotFound) and isinstance(refused, Forbidden)
    assert (one["seq"], two["seq"], one_again) == (2, 3, one)  # seq 1 was "said before"
    assert one["sender"]["username"] == "ann" and two["sender"]["username"] == "ben"
    assert retried["id"] == earlier["id"] and retried["body"] == "said before"
    assert hi["seq"] == 1 and hi["conversation_id"] == direct
    assert len(commits) == 1
    # Broadcast once each, after the commit; the echoes and the refused announce nothing.
    assert sorted(sent) == sorted([(f"conv:{group}", 2), (f"conv:{group}", 3), (f"conv:{direct}", 1)])
    page = client.get(f"/api/conversations/{group}/messages/?after_seq=0", headers=auth(ben)).get_json()
    assert [(m["seq"], m["body"]) for m in page["results"]] == [(1, "said before"), (2, "one"), (3, "two")]
    assert (
        client.get(f"/api/conversations/{blocked}/messages/?after_seq=0", headers=auth(cid)).get_json()["results"] == []
    )
    marker = client.get("/api/conversations/", headers=auth(ann)).get_json()["results"]
    assert {c["conversation"]["id"]: c["last_read_seq"] for c in marker}[group] == 2  # the sender's own, read


def test_a_sender_who_left_between_read_and_write_is_refused_and_the_rest_stored(app, client, trio, monkeypatch):
    """The batch is read again when a membership changed under it; the send that lost its member is 404."""
    from sqlalchemy import delete

    from bsn.errors import NotFound
    from bsn.extensions import db
    from bsn.models import ConversationMember
    from bsn.services import messaging

    (ann_id, ann), (ben_id, _), (cid_id, _) = trio
    group = create(client, ann, [ben_id, cid_id], title="Trip").get_json()["id"]
    online, asked = messaging._online, []

    def cid_leaves(user_ids):
        # Between the batch's read and its write, from another connection.
        if not asked:
            with db.engine.begin() as other:
                other.execute(
                    delete(ConversationMember).where(
                        ConversationMember.conversation_id == group, ConversationMember.user_id == cid_id
                    )
                )
        asked.append(user_ids)
        return online(user_ids)

    monkeypatch.setattr(messaging, "_online", cid_leaves)
    first, second = _sends(app, (ann_id, group, "still here", None), (cid_id, group, "bye", None))
    assert isinstance(second, NotFound) and first["seq"] == 1 and len(asked) == 2
    page = client.get(f"/api/conversations/{group}/messages/?after_seq=0", headers=auth(ann)).get_json()
    assert [m["body"] for m in page["results"]] == ["still here"]


def test_a_lone_sender_who_leaves_between_read_and_write_is_refused(app, client, trio, monkeypatch):
    """The one-sender statements (plain binds, no expanding IN) check membership again in the write too."""
    from sqlalchemy import delete

    from bsn.errors import NotFound
    from bsn.extensions import db
    from bsn.models import ConversationMember
    from bsn.services import messaging

    (ann_id, ann), (ben_id, _), (cid_id, _) = trio
    group = create(client, ann, [ben_id, cid_id], title="Trip").get_json()["id"]
    online = messaging._online

    def cid_leaves(user_ids):
        with db.engine.begin() as other:
            other.execute(
                delete(ConversationMember).where(
                    ConversationMember.conversation_id == group, ConversationMember.user_id == cid_id
                )
            )
        return online(user_ids)

    monkeypatch.setattr(messaging, "_online", cid_leaves)
    (refused,) = _sends(app, (cid_id, group, "bye", None))
    assert isinstance(refused, NotFound)
    monkeypatch.setattr(messaging, "_online", online)
    (stored,) = _sends(app, (ann_id, group, "still here", None))
    assert stored["seq"] == 1  # the refused send took no seq


def test_sends_that_arrive_while_a_batch_is_stored_make_the_next_batch(app, client, trio, monkeypatch):
    from functools import partial

    from bsn.services import messaging
    from tests.helpers import queue_behind_a_held_batch

    (_, ann), (ben_id, ben), _ = trio
    chat = create(client, ann, [ben_id]).get_json()["id"]
    with app.app_context():
        group = messaging._group_commit()
    answers = {}

    def one(i):
        answers[i] = send(app.test_client(), ann if i % 2 else ben, chat, f"m{i}", client_id=f"m{i}").get_json()

    sizes = queue_behind_a_held_batch(monkeypatch, group, partial(one, 0), [partial(one, i) for i in range(1, 8)])
    assert sizes == [1, 7]
    assert sorted(a["seq"] for a in answers.values()) == list(range(1, 9))
    assert all(a["body"] == f"m{i}" and a["client_id"] == f"m{i}" for i, a in answers.items())


def test_a_send_the_database_refuses_fails_alone(app, client, trio):
    """A value the database cannot take fails its own send; the rest of its batch is stored."""
    from bsn.services import messaging

    (ann_id, ann), (ben_id, _), _ = trio
    chat = create(client, ann, [ben_id]).get_json()["id"]
    with app.app_context():
        outcomes = messaging.store_sends(
            [
                messaging.Send(ann_id, chat, "fine", "ok-1", [], ()),
                messaging.Send(ann_id, chat, "unstorable", "bad-1", [object()], ()),
                messaging.Send(ben_id, chat, "fine too", None, [], ()),
            ]
        )
    fine, bad, fine_too = outcomes
    assert isinstance(bad, Exception) and (fine["seq"], fine_too["seq"]) == (1, 2)
    page = client.get(f"/api/conversations/{chat}/messages/?after_seq=0", headers=auth(ann)).get_json()
    assert [m["body"] for m in page["results"]] == ["fine", "fine too"]


def test_a_client_id_refused_in_one_conversation_is_stored_in_another(app, client, trio, make_user):
    from bsn.errors import NotFound

    (ann_id, ann), (ben_id, _), _ = trio
    _, eve = make_user("eve")
    elsewhere = create(client, eve, [ben_id]).get_json()["id"]  # ann is not in it
    chat = create(client, ann, [ben_id]).get_json()["id"]
    refused, stored = _sends(app, (ann_id, elsewhere, "wrong chat", "x-1"), (ann_id, chat, "right chat", "x-1"))
    assert isinstance(refused, NotFound) and stored["body"] == "right chat" and stored["seq"] == 1


def test_a_block_made_between_read_and_write_is_not_missed(app, client, trio, monkeypatch):
    from sqlalchemy import insert

    from bsn.errors import Forbidden
    from bsn.extensions import db
    from bsn.models import Block
    from bsn.services import messaging

    (ann_id, ann), (ben_id, ben), (cid_id, _) = trio
    direct = create(client, ann, [ben_id]).get_json()["id"]
    group = create(client, ann, [ben_id, cid_id], title="Trip").get_json()["id"]
    online = messaging._online

    def ben_blocks_ann(user_ids):
        with db.engine.begin() as other:
            other.execute(insert(Block).values(blocker_id=ben_id, blocked_id=ann_id))
        monkeypatch.setattr(messaging, "_online", online)
        return online(user_ids)

    monkeypatch.setattr(messaging, "_online", ben_blocks_ann)
    refused, stored = _sends(app, (ann_id, direct, "hello?", None), (ann_id, group, "hi all", None))
    assert isinstance(refused, Forbidden) and stored["seq"] == 1
    assert (
        client.get(f"/api/conversations/{direct}/messages/?after_seq=0", headers=auth(ann)).get_json()["results"] == []
    )
    # The seq the refused send had taken was given back with its rollback.
    assert client.delete(f"/api/users/{ann_id}/block/", headers=auth(ben)).status_code in (200, 204)
    assert send(client, ann, direct, "hello again").get_json()["seq"] == 1


def test_a_conversation_that_keeps_changing_answers_retry(app, client, trio, monkeypatch):
    """Each pass reads cid as a member and finds them gone at the write: after SEND_PASSES, a 409 `retry`."""
    from sqlalchemy import delete, insert

    from bsn.errors import Conflict
    from bsn.extensions import db
    from bsn.models import ConversationMember
    from bsn.services import messaging

    (_, ann), (ben_id, _), (cid_id, _) = trio
    group = create(client, ann, [ben_id, cid_id], title="Trip").get_json()["id"]
    member = ConversationMember.__table__
    mine = (member.c.conversation_id == group) & (member.c.user_id == cid_id)
    online, store_pass, passes = messaging._online, messaging._store_pass, []

    def cid_back_for_the_read(kept, sends, todo, outcomes):
        passes.append(todo)
        with db.engine.begin() as other:
            other.execute(delete(member).where(mine))
            other.execute(
                insert(member).values(
                    conversation_id=group, user_id=cid_id, role="member", last_read_seq=0, joined_at=datetime.now(UTC)
                )
            )
        return store_pass(kept, sends, todo, outcomes)

    def cid_gone_for_the_write(user_ids):
        with db.engine.begin() as other:
            other.execute(delete(member).where(mine))
        return online(user_ids)

    monkeypatch.setattr(messaging, "_store_pass", cid_back_for_the_read)
    monkeypatch.setattr(messaging, "_online", cid_gone_for_the_write)
    monkeypatch.setattr(messaging, "SEND_PASSES", 2)
    (outcome,) = _sends(app, (cid_id, group, "am I in?", None))
    assert isinstance(outcome, Conflict) and outcome.code == "retry" and len(passes) == 2


def test_sends_to_members_all_online_are_written_on_the_kept_connection_and_leave_it_clean(app, client, trio, request):
    """No offline member, no notification: the storing task writes on its kept connection, not the ORM session."""
    from sqlalchemy import event, select

    from bsn.extensions import db
    from bsn.models import ConversationMember, Message, Notification
    from bsn.services import messaging

    (ann_id, ann), (ben_id, _), (cid_id, _) = trio
    group = create(client, ann, [ben_id, cid_id], title="Trip").get_json()["id"]
    everyone = {ann_id: 1, ben_id: 1, cid_id: 1}
    writers = []  # the connection each INSERT INTO messages ran on

    def seen(conn, _cursor, statement, *_args):
        if statement.startswith("INSERT INTO messages"):
            writers.append(conn)

    with app.app_context():
        engine = db.engine
        event.listen(engine, "before_cursor_execute", seen)
        request.addfinalizer(lambda: event.remove(engine, "before_cursor_execute", seen))
        first, again = messaging.store_sends(
            [
                messaging.Send(ann_id, group, "hello", "k-1", [], everyone),
                messaging.Send(ann_id, group, "hello", "k-1", [], everyone),  # a retry in the same batch
            ]
        )
        (later,) = messaging.store_sends([messaging.Send(ann_id, group, "hello", "k-1", [], everyone)])
        kept = messaging._send_connection()
        connection = kept._connection
        assert connection is not None and not connection.in_transaction()  # every pass ended what it began
        assert first == again and later["id"] == first["id"] and first["seq"] == 1
        assert db.session.scalars(select(Message.body)).all() == ["hello"]
        read = db.session.scalar(
            select(ConversationMember.last_read_seq).where(
                ConversationMember.conversation_id == group, ConversationMember.user_id == ann_id
            )
        )
        assert read == 1
        assert db.session.scalar(select(Notification.id)) is None
        (fresh,) = messaging.store_sends([messaging.Send(ben_id, group, "hi all", None, [], everyone)])
        assert fresh["seq"] == 2 and kept._connection is connection  # the same connection, kept between batches
        assert writers and all(writer is connection for writer in writers)  # not the ORM session's
        db.session.rollback()
