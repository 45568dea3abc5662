"""Reports, auto-moderation, moderator actions and the audit log."""

import pytest

from bsn.models import Role
from tests.conftest import auth


@pytest.fixture
def cast(make_user):
    return {
        "amy": make_user("amy"),
        "bob": make_user("bob"),
        "mod": make_user("mod", role=Role.MODERATOR),
        "admin": make_user("boss", role=Role.ADMIN),
    }


def test_reports_queue_actions_and_audit_log(client, cast):
    (amy_id, amy), (_, bob), (mod_id, mod) = cast["amy"], cast["bob"], cast["mod"]
    post = client.post("/api/posts/", json={"body": "rude"}, headers=auth(amy)).get_json()["id"]
    reported = client.post(
        "/api/reports/", json={"target_type": "post", "target_id": post, "reason": "rude"}, headers=auth(bob)
    )
    assert reported.status_code == 201
    report_id = reported.get_json()["id"]
    assert client.get("/api/moderation/reports/", headers=auth(bob)).status_code == 403
    queue = client.get("/api/moderation/reports/", headers=auth(mod)).get_json()["results"]
    assert [(r["id"], r["target_type"], r["status"]) for r in queue] == [(report_id, "post", "open")]
    hidden = client.post(
        "/api/moderation/actions/",
        headers=auth(mod),
        json={
            "action": "hide_content",
            "target_type": "post",
            "target_id": post,
            "reason": "insults",
            "report_id": report_id,
        },
    )
    assert hidden.status_code == 201
    assert client.get(f"/api/posts/{post}/", headers=auth(bob)).status_code == 404
    assert post not in [p["id"] for p in client.get("/api/posts/", headers=auth(bob)).get_json()["results"]]
    assert client.get("/api/moderation/reports/", headers=auth(mod)).get_json()["results"] == []
    again = client.post(
        "/api/moderation/actions/",
        headers=auth(mod),
        json={
            "action": "dismiss_report",
            "target_type": "post",
            "target_id": post,
            "reason": "x",
            "report_id": report_id,
        },
    )
    assert again.status_code == 409
    suspended = client.post(
        "/api/moderation/actions/",
        headers=auth(mod),
        json={"action": "suspend_user", "target_type": "user", "target_id": amy_id, "reason": "repeat offender"},
    )
    assert suspended.status_code == 201
    assert client.get("/api/auth/user/", headers=auth(amy)).status_code in (401, 403)
    log = client.get("/api/moderation/audit-log/", headers=auth(cast["admin"][1])).get_json()["results"]
    assert [(e["action"], e["moderator_id"], e["reason"]) for e in log] == [
        ("suspend_user", mod_id, "repeat offender"),
        ("hide_content", mod_id, "insults"),
    ]
    assert client.get("/api/moderation/audit-log/", headers=auth(bob)).status_code == 403


def test_ordinary_users_cannot_act(client, cast):
    (amy_id, _), (_, bob) = cast["amy"], cast["bob"]
    response = client.post(
        "/api/moderation/actions/",
        headers=auth(bob),
        json={"action": "suspend_user", "target_type": "user", "target_id": amy_id, "reason": "I dislike her"},
    )
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"target_type": "planet", "target_id": 1, "reason": "x"}, "target_type"),
        ({"target_type": "post", "target_id": "1", "reason": "x"}, "target_id"),
        ({"target_type": "post", "target_id": 1, "reason": ""}, "reason"),
    ],
)
def test_bad_reports_are_refused(client, cast, body, field):
    response = client.post("/api/reports/", json=body, headers=auth(cast["bob"][1]))
    assert response.status_code == 422 and field in response.get_json()["error"]["fields"]


def test_reporting_something_that_does_not_exist_is_404(client, cast):
    body = {"target_type": "comment", "target_id": 999_999, "reason": "x"}
    assert client.post("/api/reports/", json=body, headers=auth(cast["bob"][1])).status_code == 404


def test_only_what_the_reporter_can_see_can_be_reported(client, cast, make_user):
    (amy_id, amy), (bob_id, bob) = cast["amy"], cast["bob"]
    cat_id, cat = make_user("cat")
    hidden = client.post("/api/posts/", json={"body": "friends only", "visibility": "followers"}, headers=auth(amy))
    chat = client.post("/api/conversations/", json={"user_ids": [bob_id]}, headers=auth(amy)).get_json()["id"]
    message = client.post(
        f"/api/conversations/{chat}/messages/", json={"body": "hi", "client_id": "m1"}, headers=auth(amy)
    ).get_json()["id"]

    def report(token, target_type, target_id):
        body = {"target_type": target_type, "target_id": target_id, "reason": "bad"}
        return client.post("/api/reports/", json=body, headers=auth(token)).status_code

    # Cat is in neither: the answer is the same as for an id that does not exist.
    assert report(cat, "post", hidden.get_json()["id"]) == 404
    assert report(cat, "message", message) == 404
    assert report(bob, "message", message) == 201  # Bob is in the chat
    assert report(amy, "user", cat_id) == 201
    client.post(f"/api/users/{amy_id}/block/", headers=auth(cat))
    assert report(amy, "user", cat_id) == 404  # who blocked you does not exist for you


def test_auto_moderation_rejects_blocked_words_and_link_spam(client, cast, app, monkeypatch):
    monkeypatch.setitem(app.config, "MODERATION_BLOCKED_WORDS", ["scam"])
    _, amy = cast["amy"]
    blocked = client.post("/api/posts/", json={"body": "Great SCAM here"}, headers=auth(amy))
    assert blocked.status_code == 422 and blocked.get_json()["error"]["code"] == "content_blocked"
    assert client.post("/api/posts/", json={"body": "no scammer here"}, headers=auth(amy)).status_code == 201
    spam = " ".join(f"https://x{i}.example" for i in range(4))
    linked = client.post("/api/posts/", json={"body": spam}, headers=auth(amy))
    assert linked.status_code == 422 and linked.get_json()["error"]["code"] == "link_spam"
    assert len(client.get("/api/posts/", headers=auth(amy)).get_json()["results"]) == 1


def test_hold_mode_publishes_hidden_and_queues_for_review(client, cast, app, monkeypatch):
    monkeypatch.setitem(app.config, "MODERATION_BLOCKED_WORDS", ["scam"])
    monkeypatch.setitem(app.config, "MODERATION_MODE", "hold")
    (_, amy), (_, bob), (_, mod) = cast["amy"], cast["bob"], cast["mod"]
    held = client.post("/api/posts/", json={"body": "a scam"}, headers=auth(amy))
    assert held.status_code == 201
    post_id = held.get_json()["id"]
    assert client.get(f"/api/posts/{post_id}/", headers=auth(bob)).status_code == 404
    assert client.get(f"/api/posts/{post_id}/", headers=auth(amy)).status_code == 200  # its author still sees it
    queue = client.get("/api/moderation/reports/", headers=auth(mod)).get_json()["results"]
    assert [(r["target_id"], r["reporter_id"]) for r in queue] == [(post_id, None)]
