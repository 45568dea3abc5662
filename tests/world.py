"""A small world of real resources owned by one user, built through the REST API, for the fuzz and access tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@dataclass
class World:
    owner_id: int
    owner_token: str
    other_id: int
    other_token: str
    ids: dict[str, int | str] = field(default_factory=dict)


def _ok(response, status: int = 200):
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    return response.get_json()


def build(client, make_user, grant) -> World:
    """Owner A and another user B who follow each other; A owns one of every kind of resource.

    B has joined A's public group, asked to join A's private one, commented on A's post, and is in a
    direct chat and a group chat (A its admin) with A; A's NFT is listed for sale and a second one is not.
    """
    owner_id, owner = make_user("owner")
    other_id, other = make_user("other")
    world = World(owner_id, owner, other_id, other)
    a = {"Authorization": f"Bearer {owner}"}
    b = {"Authorization": f"Bearer {other}"}
    ids = world.ids
    ids["user_id"] = owner_id

    _ok(client.post(f"/api/users/{other_id}/follow/", headers=a))
    _ok(client.post(f"/api/users/{owner_id}/follow/", headers=b))

    ids["post_id"] = _ok(client.post("/api/posts/", json={"body": "hello #world"}, headers=a), 201)["id"]
    ids["followers_post_id"] = _ok(
        client.post("/api/posts/", json={"body": "friends only", "visibility": "followers"}, headers=a), 201
    )["id"]
    ids["comment_id"] = _ok(
        client.post(f"/api/posts/{ids['post_id']}/comments/", json={"body": "my own comment"}, headers=a), 201
    )["id"]
    ids["other_comment_id"] = _ok(
        client.post(f"/api/posts/{ids['post_id']}/comments/", json={"body": "nice"}, headers=b), 201
    )["id"]
    _ok(client.post(f"/api/posts/{ids['post_id']}/like/", headers=b))

    upload = client.post("/api/uploads/", data={"file": (_png(), "a.png")}, headers=a)
    ids["upload_id"] = _ok(upload, 201)["id"]
    ids["story_id"] = _ok(
        client.post("/api/stories/", json={"media": ids["upload_id"], "caption": "hi"}, headers=a), 201
    )["id"]

    ids["group_id"] = _ok(client.post("/api/groups/", json={"name": "public"}, headers=a), 201)["id"]
    ids["private_group_id"] = _ok(
        client.post("/api/groups/", json={"name": "private", "private": True}, headers=a), 201
    )["id"]
    _ok(client.post(f"/api/groups/{ids['group_id']}/join/", headers=b))
    _ok(client.post(f"/api/groups/{ids['private_group_id']}/join/", headers=b))
    starts = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    ids["event_id"] = _ok(
        client.post(
            f"/api/groups/{ids['private_group_id']}/events/", json={"title": "meet", "starts_at": starts}, headers=a
        ),
        201,
    )["id"]
    ids["group_post_id"] = _ok(
        client.post(f"/api/groups/{ids['private_group_id']}/posts/", json={"body": "members only"}, headers=a), 201
    )["id"]
    _ok(
        client.post(
            f"/api/groups/{ids['private_group_id']}/files/",
            json={"upload_id": ids["upload_id"], "name": "a.png"},
            headers=a,
        ),
        201,
    )

    ids["conversation_id"] = _ok(client.post("/api/conversations/", json={"user_ids": [other_id]}, headers=a), 201)[
        "id"
    ]
    ids["group_conversation_id"] = _ok(
        client.post("/api/conversations/", json={"user_ids": [other_id], "title": "team"}, headers=a), 201
    )["id"]
    ids["message_id"] = _ok(
        client.post(f"/api/conversations/{ids['conversation_id']}/messages/", json={"body": "hi B"}, headers=a), 201
    )["id"]

    ids["collection_id"] = _ok(
        client.post("/api/nft/collections/", json={"name": "art", "symbol": "ART"}, headers=a), 201
    )["id"]
    mint = {"name": "one", "image": "https://example.com/1.png"}
    ids["nft_id"] = _ok(client.post(f"/api/nft/collections/{ids['collection_id']}/mint/", json=mint, headers=a), 201)[
        "id"
    ]
    ids["listed_nft_id"] = _ok(
        client.post(f"/api/nft/collections/{ids['collection_id']}/mint/", json=mint, headers=a), 201
    )["id"]
    ids["listing_id"] = _ok(
        client.post(f"/api/nft/tokens/{ids['listed_nft_id']}/list/", json={"price": "5"}, headers=a), 201
    )["id"]

    grant(owner_id, "1000")
    proposal = {
        "title": "more mining",
        "ends_at": (datetime.now(UTC) + timedelta(days=2)).isoformat(),
        "quorum_bps": 100,
    }
    ids["proposal_id"] = _ok(client.post("/api/dao/proposals/", json=proposal, headers=a), 201)["id"]
    _ok(client.post(f"/api/dao/proposals/{ids['proposal_id']}/vote/", json={"option": 0}, headers=a))
    return world


def _png():
    import io

    return io.BytesIO(PNG)
