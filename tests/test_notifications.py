"""Notifications: created by the services, listed, marked read, counted, and filtered by preferences."""

import pytest

from tests.conftest import auth


@pytest.fixture
def people(make_user):
    return {name: make_user(name) for name in ("amy", "bob", "cat")}


def inbox(client, token, **query):
    suffix = "&".join(f"{k}={v}" for k, v in query.items())
    return client.get("/api/notifications/?" + suffix, headers=auth(token)).get_json()


def test_follow_like_comment_and_mention_notify(client, people):
    (amy_id, amy), (bob_id, bob), (_, cat) = people["amy"], people["bob"], people["cat"]
    client.post(f"/api/users/{amy_id}/follow/", headers=auth(bob))
    client.post(f"/api/users/{amy_id}/follow/", headers=auth(bob))  # idempotent: one notification
    post = client.post("/api/posts/", json={"body": "hi @cat and @nobody #News"}, headers=auth(amy)).get_json()
    client.post(f"/api/posts/{post['id']}/like/", headers=auth(bob))
    client.post(f"/api/posts/{post['id']}/like/", headers=auth(amy))  # one's own like: no notification
    client.post(f"/api/posts/{post['id']}/comments/", json={"body": "nice"}, headers=auth(bob))
    mine = inbox(client, amy)
    assert [n["kind"] for n in mine["results"]] == ["comment", "like", "follow"]
    assert mine["unread_count"] == 3 and mine["results"][0]["actor"]["id"] == bob_id
    cats = inbox(client, cat)["results"]
    assert [(n["kind"], n["data"]["post_id"]) for n in cats] == [("mention", post["id"])]
    tagged = client.get("/api/posts/?tag=news", headers=auth(bob)).get_json()["results"]
    assert [p["id"] for p in tagged] == [post["id"]]
    assert client.get("/api/posts/?tag=%23NEWS", headers=auth(bob)).get_json()["results"][0]["id"] == post["id"]


def test_mark_read_some_or_all(client, people):
    (amy_id, amy), (_, bob), (_, cat) = people["amy"], people["bob"], people["cat"]
    client.post(f"/api/users/{amy_id}/follow/", headers=auth(bob))
    client.post(f"/api/users/{amy_id}/follow/", headers=auth(cat))
    first = inbox(client, amy)["results"][0]["id"]
    assert client.post("/api/notifications/read/", json={"ids": [first]}, headers=auth(amy)).get_json() == {
        "unread_count": 1
    }
    assert [n["read"] for n in inbox(client, amy)["results"]] == [True, False]
    assert len(inbox(client, amy, unread="true")["results"]) == 1
    assert client.post("/api/notifications/read/", json={}, headers=auth(amy)).get_json() == {"unread_count": 0}
    assert client.post("/api/notifications/read/", json={"ids": "all"}, headers=auth(amy)).status_code == 422


def test_preferences_are_respected(client, people):
    (amy_id, amy), (_, bob) = people["amy"], people["bob"]
    prefs = client.get("/api/notifications/preferences/", headers=auth(amy)).get_json()
    assert prefs["follow"] is True and set(prefs) >= {"like", "comment", "mention", "message"}
    changed = client.patch("/api/notifications/preferences/", json={"follow": False}, headers=auth(amy))
    assert changed.get_json()["follow"] is False and changed.get_json()["like"] is True
    client.post(f"/api/users/{amy_id}/follow/", headers=auth(bob))
    assert inbox(client, amy)["results"] == []
    bad = client.patch("/api/notifications/preferences/", json={"telepathy": True}, headers=auth(amy))
    assert bad.status_code == 422


def test_a_message_to_an_offline_member_notifies_them(client, people):
    (_, amy), (bob_id, bob) = people["amy"], people["bob"]
    chat = client.post("/api/conversations/", json={"user_ids": [bob_id]}, headers=auth(amy)).get_json()["id"]
    sent = client.post(f"/api/conversations/{chat}/messages/", json={"body": "you there?"}, headers=auth(amy))
    notes = inbox(client, bob)["results"]
    assert [(n["kind"], n["data"]["message_id"]) for n in notes] == [("message", sent.get_json()["id"])]
    assert inbox(client, amy)["results"] == []  # not for the sender


def test_a_member_the_caller_knows_to_be_connected_here_is_not_notified(ctx, people):
    from sqlalchemy import select

    from bsn.actors import Caller
    from bsn.extensions import db
    from bsn.models import Notification
    from bsn.services import messaging

    (amy_id, _), (bob_id, _), (cat_id, _) = people["amy"], people["bob"], people["cat"]
    chat = messaging.create_conversation(Caller(amy_id), [bob_id, cat_id], "trio")
    # Neither has a presence in Redis; the chat namespace vouches for Bob's socket on this process.
    messaging.send_message(Caller(amy_id), chat.id, "hi", None, online_here={bob_id: 1})
    assert [n.user_id for n in db.session.scalars(select(Notification).filter_by(kind="message"))] == [cat_id]


def test_notifications_are_pushed_after_commit(client, people, app, monkeypatch):
    from bsn import realtime

    pushed = []
    monkeypatch.setattr(realtime, "emit", lambda event, data, namespace, room: pushed.append((event, room, data)))
    (amy_id, _), (_, bob) = people["amy"], people["bob"]
    client.post(f"/api/users/{amy_id}/follow/", headers=auth(bob))
    events = [(event, room) for event, room, _ in pushed if room == f"user:{amy_id}"]
    assert ("notification", f"user:{amy_id}") in events and ("unread_count", f"user:{amy_id}") in events
    counts = [data["count"] for event, room, data in pushed if event == "unread_count"]
    assert counts == [1]


def test_nothing_is_pushed_when_the_transaction_rolls_back(ctx, people, monkeypatch):
    from bsn import realtime
    from bsn.extensions import db
    from bsn.services import notifications

    pushed = []
    monkeypatch.setattr(realtime, "emit", lambda *args: pushed.append(args))
    notifications.notify(people["amy"][0], "follow", people["bob"][0])
    db.session.rollback()
    db.session.commit()
    assert pushed == []
    assert notifications.unread_count(people["amy"][0]) == 0
