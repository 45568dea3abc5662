"""Groups: public and private, join requests, roles, group posts, events with RSVPs, files."""

import io

import pytest

from tests.conftest import auth

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


@pytest.fixture
def folks(make_user):
    return {name: make_user(name) for name in ("own", "amy", "bob")}


def make_group(client, token, private=False):
    body = {"name": "Hikers", "description": "we walk", "private": private}
    return client.post("/api/groups/", json=body, headers=auth(token)).get_json()


def test_a_public_group_is_joined_at_once(client, folks):
    (_, own), (amy_id, amy) = folks["own"], folks["amy"]
    group = make_group(client, own)
    assert group["my_role"] == "owner" and group["member_count"] == 1
    joined = client.post(f"/api/groups/{group['id']}/join/", headers=auth(amy)).get_json()
    assert joined["my_role"] == "member" and joined["member_count"] == 2
    client.post(f"/api/groups/{group['id']}/join/", headers=auth(amy))  # idempotent
    members = client.get(f"/api/groups/{group['id']}/members/", headers=auth(amy)).get_json()["results"]
    assert [m["id"] for m in members][-1] == amy_id and len(members) == 2
    assert client.post(f"/api/groups/{group['id']}/leave/", headers=auth(amy)).get_json()["my_role"] is None
    owner_leaves = client.post(f"/api/groups/{group['id']}/leave/", headers=auth(own))
    assert owner_leaves.status_code == 409


def test_a_private_group_is_joined_by_request_and_hidden_from_non_members(client, folks):
    (_, own), (amy_id, amy), (bob_id, bob) = folks["own"], folks["amy"], folks["bob"]
    group = make_group(client, own, private=True)
    gid = group["id"]
    assert client.get(f"/api/groups/{gid}/", headers=auth(bob)).get_json()["name"] == "Hikers"
    for path in ("members/", "posts/", "events/", "files/"):
        response = client.get(f"/api/groups/{gid}/{path}", headers=auth(bob))
        assert response.status_code == 403 and response.get_json()["error"]["code"] == "private_group", path
    asked = client.post(f"/api/groups/{gid}/join/", headers=auth(amy)).get_json()
    assert asked["my_status"] == "pending" and asked["my_role"] is None
    notes = client.get("/api/notifications/", headers=auth(own)).get_json()["results"]
    assert [(n["kind"], n["data"]["group_id"]) for n in notes] == [("group_request", gid)]
    assert client.get(f"/api/groups/{gid}/posts/", headers=auth(amy)).status_code == 403
    pending = client.get(f"/api/groups/{gid}/members/?pending=true", headers=auth(own)).get_json()["results"]
    assert [m["id"] for m in pending] == [amy_id]
    assert client.post(f"/api/groups/{gid}/requests/{amy_id}/approve/", headers=auth(bob)).status_code == 403
    assert client.post(f"/api/groups/{gid}/requests/{amy_id}/approve/", headers=auth(own)).status_code == 200
    assert client.get(f"/api/groups/{gid}/posts/", headers=auth(amy)).status_code == 200
    client.post(f"/api/groups/{gid}/join/", headers=auth(bob))
    assert client.post(f"/api/groups/{gid}/requests/{bob_id}/reject/", headers=auth(own)).status_code == 200
    assert client.post(f"/api/groups/{gid}/requests/{bob_id}/reject/", headers=auth(own)).status_code == 404


def test_group_admins_can_approve_after_promotion(client, folks):
    (_, own), (amy_id, amy), (bob_id, bob) = folks["own"], folks["amy"], folks["bob"]
    gid = make_group(client, own, private=True)["id"]
    client.post(f"/api/groups/{gid}/join/", headers=auth(amy))
    client.post(f"/api/groups/{gid}/requests/{amy_id}/approve/", headers=auth(own))
    promoted = client.post(f"/api/groups/{gid}/members/{amy_id}/role/", json={"role": "admin"}, headers=auth(own))
    assert promoted.status_code == 204
    client.post(f"/api/groups/{gid}/join/", headers=auth(bob))
    assert client.post(f"/api/groups/{gid}/requests/{bob_id}/approve/", headers=auth(amy)).status_code == 200


def test_group_posts_stay_in_their_group(client, folks):
    (_, own), (_, amy), (_, bob) = folks["own"], folks["amy"], folks["bob"]
    gid = make_group(client, own, private=True)["id"]
    post = client.post(f"/api/groups/{gid}/posts/", json={"body": "members only"}, headers=auth(own)).get_json()
    assert client.post(f"/api/groups/{gid}/posts/", json={"body": "x"}, headers=auth(bob)).status_code == 403
    assert [p["id"] for p in client.get(f"/api/groups/{gid}/posts/", headers=auth(own)).get_json()["results"]] == [
        post["id"]
    ]
    assert post["id"] not in [p["id"] for p in client.get("/api/posts/", headers=auth(amy)).get_json()["results"]]
    assert client.get(f"/api/posts/{post['id']}/", headers=auth(amy)).status_code == 404


def test_events_rsvp_and_files(client, folks):
    (_, own), (_, amy) = folks["own"], folks["amy"]
    gid = make_group(client, own)["id"]
    client.post(f"/api/groups/{gid}/join/", headers=auth(amy))
    event = client.post(
        f"/api/groups/{gid}/events/",
        headers=auth(own),
        json={"title": "Walk", "starts_at": "2026-12-01T09:00:00+00:00", "location": "Park"},
    )
    assert event.status_code == 201
    eid = event.get_json()["id"]
    url = f"/api/groups/{gid}/events/{eid}/rsvp/"
    assert client.post(url, json={"status": "maybe"}, headers=auth(amy)).status_code == 200
    client.post(url, json={"status": "going"}, headers=auth(amy))
    client.post(url, json={"status": "going"}, headers=auth(own))
    events = client.get(f"/api/groups/{gid}/events/", headers=auth(amy)).get_json()["results"]
    assert events[0]["rsvps"] == {"going": 2, "maybe": 0, "no": 0}
    assert client.post(url, json={"status": "perhaps"}, headers=auth(amy)).status_code == 422
    upload = client.post(
        "/api/uploads/",
        data={"file": (io.BytesIO(PNG), "map.png", "image/png")},
        headers=auth(amy),
        content_type="multipart/form-data",
    ).get_json()
    shared = client.post(
        f"/api/groups/{gid}/files/", json={"upload_id": upload["id"], "name": "Map"}, headers=auth(amy)
    )
    assert shared.status_code == 201
    listed = client.get(f"/api/groups/{gid}/files/", headers=auth(own)).get_json()["results"]
    assert [(f["name"], f["content_type"]) for f in listed] == [("Map", "image/png")]
    theirs = client.post(f"/api/groups/{gid}/files/", json={"upload_id": upload["id"], "name": "x"}, headers=auth(own))
    assert theirs.status_code == 422
