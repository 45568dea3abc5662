"""Profiles, search, follows, blocks and mutes."""

import pytest

from tests.conftest import auth


@pytest.fixture
def people(make_user):
    return {name: make_user(name) for name in ("amy", "bob", "cat")}


def test_profiles_carry_counts(client, people):
    (_, amy), (bob_id, bob) = people["amy"], people["bob"]
    client.post(f"/api/users/{bob_id}/follow/", headers=auth(amy))
    client.post("/api/posts/", json={"body": "first"}, headers=auth(bob))
    profile = client.get(f"/api/users/{bob_id}/", headers=auth(amy)).get_json()
    assert (profile["followers_count"], profile["following_count"], profile["posts_count"]) == (1, 0, 1)
    assert profile["followed_by_me"] is True and profile["username"] == "bob"
    assert client.get("/api/users/999999/", headers=auth(amy)).status_code == 404


def test_follow_and_unfollow_are_idempotent(client, people):
    (amy_id, amy), (bob_id, bob) = people["amy"], people["bob"]
    for _ in range(2):
        response = client.post(f"/api/users/{bob_id}/follow/", headers=auth(amy))
        assert response.status_code == 200 and response.get_json() == {"user_id": bob_id, "following": True}
    followers = client.get(f"/api/users/{bob_id}/followers/", headers=auth(bob)).get_json()
    assert [u["id"] for u in followers["results"]] == [amy_id]
    for _ in range(2):
        assert client.delete(f"/api/users/{bob_id}/unfollow/", headers=auth(amy)).get_json()["following"] is False
    assert client.get(f"/api/users/{bob_id}/followers/", headers=auth(bob)).get_json()["results"] == []
    self_follow = client.post(f"/api/users/{amy_id}/follow/", headers=auth(amy))
    assert self_follow.status_code == 422
    assert client.post("/api/users/999999/follow/", headers=auth(amy)).status_code == 404


def test_follow_lists_are_paginated(client, make_user, people):
    _, amy = people["amy"]
    amy_id = people["amy"][0]
    fans = [make_user() for _ in range(5)]
    for _, token in fans:
        client.post(f"/api/users/{amy_id}/follow/", headers=auth(token))
    seen, cursor = [], None
    while True:
        url = f"/api/users/{amy_id}/followers/?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(url, headers=auth(amy)).get_json()
        assert len(page["results"]) <= 2
        seen += [u["id"] for u in page["results"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(uid for uid, _ in fans) and len(seen) == 5
    following = client.get(f"/api/users/{fans[0][0]}/following/", headers=auth(amy)).get_json()["results"]
    assert [u["id"] for u in following] == [amy_id]


def test_search_by_prefix(client, people, make_user):
    _, amy = people["amy"]
    make_user("amanda")
    found = client.get("/api/users/?q=AM", headers=auth(amy)).get_json()["results"]
    assert [u["username"] for u in found] == ["amanda", "amy"]
    assert client.get("/api/users/?q=%25", headers=auth(amy)).status_code in (200, 422)
    assert client.get("/api/users/", headers=auth(amy)).status_code == 422


def test_a_blocked_user_cannot_follow_see_or_comment(client, people):
    (amy_id, amy), (bob_id, bob) = people["amy"], people["bob"]
    post = client.post("/api/posts/", json={"body": "amy's"}, headers=auth(amy)).get_json()["id"]
    client.post(f"/api/users/{amy_id}/follow/", headers=auth(bob))
    assert client.post(f"/api/users/{bob_id}/block/", headers=auth(amy)).get_json()["blocked"] is True
    assert client.get(f"/api/users/{amy_id}/followers/", headers=auth(amy)).get_json()["results"] == []
    assert client.post(f"/api/users/{amy_id}/follow/", headers=auth(bob)).status_code == 404
    assert client.get(f"/api/users/{amy_id}/", headers=auth(bob)).status_code == 404
    assert client.get(f"/api/posts/{post}/", headers=auth(bob)).status_code == 404
    assert client.post(f"/api/posts/{post}/comments/", json={"body": "hey"}, headers=auth(bob)).status_code == 404
    assert post not in [p["id"] for p in client.get("/api/posts/", headers=auth(bob)).get_json()["results"]]
    client.delete(f"/api/users/{bob_id}/block/", headers=auth(amy))
    assert client.get(f"/api/posts/{post}/", headers=auth(bob)).status_code == 200


def test_a_muted_user_leaves_the_muters_lists_and_notifications_but_is_not_stopped(client, people):
    (amy_id, amy), (bob_id, bob) = people["amy"], people["bob"]
    client.post(f"/api/users/{bob_id}/follow/", headers=auth(amy))
    before = client.post("/api/posts/", json={"body": "bob before"}, headers=auth(bob)).get_json()["id"]
    for _ in range(2):  # idempotent
        response = client.post(f"/api/users/{bob_id}/mute/", headers=auth(amy))
        assert response.status_code == 200 and response.get_json() == {"user_id": bob_id, "muted": True}
    assert client.get(f"/api/users/{bob_id}/", headers=auth(amy)).get_json()["muted_by_me"] is True

    def ids(path):
        return [p["id"] for p in client.get(path, headers=auth(amy)).get_json()["results"]]

    assert before not in ids("/api/feed/") and before not in ids("/api/posts/")
    assert ids(f"/api/posts/?author={bob_id}") == [before]  # asked for by name: shown, as on a profile
    # Bob is not stopped and not told: he can still follow and like; Amy just hears nothing of it.
    unread = client.get("/api/notifications/", headers=auth(amy)).get_json()["unread_count"]
    mine = client.post("/api/posts/", json={"body": "amy's"}, headers=auth(amy)).get_json()["id"]
    assert client.post(f"/api/posts/{mine}/like/", headers=auth(bob)).status_code == 200
    assert client.post(f"/api/users/{amy_id}/follow/", headers=auth(bob)).status_code == 200
    assert client.get("/api/notifications/", headers=auth(amy)).get_json()["unread_count"] == unread
    assert client.get(f"/api/users/{amy_id}/", headers=auth(bob)).get_json()["muted_by_me"] is False

    assert client.delete(f"/api/users/{bob_id}/mute/", headers=auth(amy)).get_json()["muted"] is False
    assert before in ids("/api/feed/")


def test_mute_input_is_checked(client, people):
    (amy_id, amy) = people["amy"]
    assert client.post(f"/api/users/{amy_id}/mute/", headers=auth(amy)).status_code == 422
    assert client.post("/api/users/999999/mute/", headers=auth(amy)).status_code == 404
    assert client.delete("/api/users/999999/mute/", headers=auth(amy)).status_code == 404
    assert client.post(f"/api/users/{amy_id}/mute/").status_code == 401
