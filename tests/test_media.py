"""Uploads (checked on content) and stories (24 h, views once, one reaction, viewers for the owner, purge)."""

import io
from datetime import UTC, datetime

import pytest

from bsn.clock import clock
from bsn.services import media
from tests.conftest import auth

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64


def upload(client, token, data, name="f.png", content_type="image/png"):
    return client.post(
        "/api/uploads/",
        data={"file": (io.BytesIO(data), name, content_type)},
        headers=auth(token),
        content_type="multipart/form-data",
    )


def test_uploads_are_checked_on_content_and_served_safely(client, make_user):
    _, token = make_user()
    stored = upload(client, token, JPEG, name="cat.png", content_type="image/png")
    assert stored.status_code == 201 and stored.get_json()["content_type"] == "image/jpeg"  # by content, not name
    served = client.get(stored.get_json()["url"])
    assert served.status_code == 200 and served.data == JPEG
    assert served.headers["Content-Type"] == "image/jpeg" and served.headers["X-Content-Type-Options"] == "nosniff"
    html = upload(client, token, b"<html><script>alert(1)</script>", name="x.png")
    assert html.status_code == 422 and "file" in html.get_json()["error"]["fields"]
    assert upload(client, token, b"").status_code == 422
    missing = client.post("/api/uploads/", data={}, headers=auth(token), content_type="multipart/form-data")
    assert missing.status_code == 422
    assert client.get("/api/uploads/" + "0" * 32).status_code == 404


def test_uploads_have_a_size_limit(client, make_user, app, monkeypatch):
    monkeypatch.setitem(app.config, "UPLOAD_MAX_BYTES", 1000)
    _, token = make_user()
    assert upload(client, token, PNG + b"\x00" * 2000).status_code in (413, 422)
    assert upload(client, token, PNG).status_code == 201


@pytest.fixture
def story_people(client, make_user):
    clock.freeze(datetime(2026, 9, 1, 12, 0, tzinfo=UTC))
    amy_id, amy = make_user("amy")
    bob_id, bob = make_user("bob")
    cat_id, cat = make_user("cat")
    client.post(f"/api/users/{amy_id}/follow/", headers=auth(bob))
    return {"amy": (amy_id, amy), "bob": (bob_id, bob), "cat": (cat_id, cat)}


def test_stories_live_24_hours_and_are_grouped_by_author(client, story_people):
    (amy_id, amy), (_, bob) = story_people["amy"], story_people["bob"]
    file_id = upload(client, amy, PNG).get_json()["id"]
    first = client.post("/api/stories/", json={"media": file_id, "caption": "one"}, headers=auth(amy))
    assert first.status_code == 201 and first.get_json()["expires_at"] == "2026-09-02T12:00:00Z"
    client.post("/api/stories/", json={"media": "https://cdn.example.com/x.jpg"}, headers=auth(amy))
    groups = client.get("/api/stories/", headers=auth(bob)).get_json()["results"]
    assert [g["author"]["id"] for g in groups] == [amy_id] and len(groups[0]["stories"]) == 2
    clock.advance(hours=24)
    assert client.get("/api/stories/", headers=auth(bob)).get_json()["results"] == []
    assert client.post(f"/api/stories/{first.get_json()['id']}/view/", headers=auth(bob)).status_code == 404


def test_muting_an_author_hides_their_stories(client, story_people):
    (amy_id, amy), (_, bob) = story_people["amy"], story_people["bob"]
    client.post("/api/stories/", json={"media": "https://cdn.example.com/x.jpg"}, headers=auth(amy))
    client.post(f"/api/users/{amy_id}/mute/", headers=auth(bob))
    assert client.get("/api/stories/", headers=auth(bob)).get_json()["results"] == []
    client.delete(f"/api/users/{amy_id}/mute/", headers=auth(bob))
    assert len(client.get("/api/stories/", headers=auth(bob)).get_json()["results"]) == 1


def test_story_media_must_be_ones_own_upload_or_https(client, story_people):
    _, amy = story_people["amy"]
    _, bob = story_people["bob"]
    bobs_file = upload(client, bob, PNG).get_json()["id"]
    for media_value in (bobs_file, "http://insecure/x.png", "nope"):
        response = client.post("/api/stories/", json={"media": media_value}, headers=auth(amy))
        assert response.status_code == 422 and "media" in response.get_json()["error"]["fields"]


def test_views_count_once_reactions_change_and_only_the_owner_sees_viewers(client, story_people):
    (_, amy), (bob_id, bob), (_, cat) = story_people["amy"], story_people["bob"], story_people["cat"]
    story = client.post("/api/stories/", json={"media": "https://cdn.example.com/x.jpg"}, headers=auth(amy))
    story_id = story.get_json()["id"]
    for _ in range(3):
        assert client.post(f"/api/stories/{story_id}/view/", headers=auth(bob)).get_json()["view_count"] == 1
    client.post(f"/api/stories/{story_id}/react/", json={"emoji": "😍"}, headers=auth(bob))
    client.post(f"/api/stories/{story_id}/react/", json={"emoji": "🔥"}, headers=auth(bob))
    viewers = client.get(f"/api/stories/{story_id}/viewers/", headers=auth(amy)).get_json()["results"]
    assert [(v["user"]["id"], v["reaction"]) for v in viewers] == [(bob_id, "🔥")]
    assert client.get(f"/api/stories/{story_id}/viewers/", headers=auth(bob)).status_code == 403
    assert client.get(f"/api/stories/{story_id}/viewers/", headers=auth(cat)).status_code == 403
    assert client.post(f"/api/stories/{story_id}/react/", json={"emoji": ""}, headers=auth(bob)).status_code == 422


def test_the_purge_deletes_expired_stories_and_their_files(client, ctx, story_people):
    from bsn.storage import storage

    _, amy = story_people["amy"]
    file_id = upload(client, amy, PNG).get_json()["id"]
    client.post("/api/stories/", json={"media": file_id}, headers=auth(amy))
    kept = client.post("/api/stories/", json={"media": "https://cdn.example.com/y.jpg"}, headers=auth(amy))
    clock.advance(hours=23)
    later = client.post("/api/stories/", json={"media": "https://cdn.example.com/z.jpg"}, headers=auth(amy))
    clock.advance(hours=1, seconds=1)
    assert media.purge_stories() == 2
    assert not storage().exists(file_id) and client.get(f"/api/uploads/{file_id}").status_code == 404
    assert media.purge_stories() == 0
    remaining = client.get("/api/stories/", headers=auth(amy)).get_json()["results"][0]["stories"]
    assert [s["id"] for s in remaining] == [later.get_json()["id"]] and kept.status_code == 201


def test_the_purge_keeps_files_shared_in_a_group(client, ctx, story_people):
    from bsn.storage import storage

    _, amy = story_people["amy"]
    file_id = upload(client, amy, PNG).get_json()["id"]
    client.post("/api/stories/", json={"media": file_id}, headers=auth(amy))
    group = client.post("/api/groups/", json={"name": "g"}, headers=auth(amy)).get_json()["id"]
    client.post(f"/api/groups/{group}/files/", json={"upload_id": file_id, "name": "kept"}, headers=auth(amy))
    clock.advance(hours=25)
    assert media.purge_stories() == 1
    assert storage().exists(file_id)
    assert [f["name"] for f in client.get(f"/api/groups/{group}/files/", headers=auth(amy)).get_json()["results"]] == [
        "kept"
    ]
