"""A user's own data: the export, and deleting the account (what goes, what stays, what the ledger says)."""

from __future__ import annotations

import io

from sqlalchemy import func, select

from bsn.extensions import db, redis_store
from bsn.models import Comment, LedgerEntry, Message, Post, PostLike, User, Wallet
from bsn.services import mining, privacy, tokens
from bsn.storage import storage
from tests.conftest import auth

PASSWORD = "correct horse battery"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def user_fk_columns() -> set[tuple[str, str]]:
    return {
        (table.name, fk.parent.name)
        for table in db.metadata.tables.values()
        for fk in table.foreign_keys
        if fk.column.table.name == "users"
    }


def test_every_column_that_names_a_user_is_exported_or_left_out_for_a_reason(ctx):
    missing = user_fk_columns() - privacy.EXPORTED - set(privacy.NOT_EXPORTED)
    assert not missing, f"add these to privacy.EXPORTED or NOT_EXPORTED: {sorted(missing)}"
    assert not privacy.EXPORTED & set(privacy.NOT_EXPORTED)
    assert privacy.EXPORTED | set(privacy.NOT_EXPORTED) <= user_fk_columns()  # no stale entries


def world(client, make_user, grant):
    """Alice with a post, a comment and a like on Bob's post, a message to Bob, tokens and an upload."""
    alice_id, alice = make_user("alice")
    bob_id, bob = make_user("bob")
    grant(alice_id, "12.5")
    mine = client.post("/api/posts/", headers=auth(alice), json={"body": "alice's post"}).get_json()["id"]
    theirs = client.post("/api/posts/", headers=auth(bob), json={"body": "bob's post"}).get_json()["id"]
    client.post(f"/api/posts/{theirs}/comments/", headers=auth(alice), json={"body": "nice"})
    client.post(f"/api/posts/{theirs}/like/", headers=auth(alice))
    client.post(f"/api/posts/{mine}/like/", headers=auth(bob))
    client.post(f"/api/users/{bob_id}/follow/", headers=auth(alice))
    client.post(f"/api/users/{alice_id}/follow/", headers=auth(bob))
    chat = client.post("/api/conversations/", headers=auth(alice), json={"user_ids": [bob_id]}).get_json()["id"]
    sent = client.post(
        f"/api/conversations/{chat}/messages/", headers=auth(alice), json={"body": "hi bob", "client_id": "c1"}
    )
    assert sent.status_code == 201, sent.get_json()
    upload = client.post(
        "/api/uploads/",
        data={"file": (io.BytesIO(PNG), "a.png", "image/png")},
        headers=auth(alice),
        content_type="multipart/form-data",
    ).get_json()["id"]
    assert client.post("/api/mining/start/", headers=auth(alice)).status_code == 200
    return {
        "alice_id": alice_id,
        "alice": alice,
        "bob_id": bob_id,
        "bob": bob,
        "mine": mine,
        "theirs": theirs,
        "chat": chat,
        "upload": upload,
    }


def test_the_export_holds_the_users_data_and_no_secrets(client, make_user, grant):
    w = world(client, make_user, grant)
    response = client.get("/api/auth/user/export/", headers=auth(w["alice"]))
    assert response.status_code == 200
    assert "attachment" in response.headers["Content-Disposition"]
    data = response.get_json()["data"]
    assert data["account"][0]["username"] == "alice" and "password_hash" not in data["account"][0]
    assert [p["body"] for p in data["posts"]] == ["alice's post"]
    assert [c["body"] for c in data["comments"]] == ["nice"]
    assert {m["body"] for m in data["messages"]} == {"hi bob"}
    assert sum(e["amount"] for e in data["ledger_entries"]) == data["wallets"][0]["balance"] == 1_250_000_000
    assert {(f["follower_id"], f["followee_id"]) for f in data["follows"]} == {
        (w["alice_id"], w["bob_id"]),
        (w["bob_id"], w["alice_id"]),
    }
    assert [u["id"] for u in data["uploads"]] == [w["upload"]]
    assert "auth_tokens" not in data and "account_tokens" not in data
    # Bob's data is not in Alice's export: his post and his like notification are his.
    assert all(p["author_id"] == w["alice_id"] for p in data["posts"])
    assert all(n["user_id"] == w["alice_id"] for n in data["notifications"])
    assert client.get("/api/auth/user/export/").status_code == 401


def test_a_wrong_password_deletes_nothing(client, ctx, make_user, grant):
    w = world(client, make_user, grant)
    response = client.delete("/api/auth/user/", headers=auth(w["alice"]), json={"password": "not my password"})
    assert response.status_code == 422 and response.get_json()["error"]["fields"] == {"password": ["Wrong password."]}
    assert client.delete("/api/auth/user/", headers=auth(w["alice"]), json={}).status_code == 422
    assert client.get("/api/auth/user/", headers=auth(w["alice"])).status_code == 200
    assert db.session.get(User, w["alice_id"]).deleted_at is None


def test_deleting_an_account_removes_content_keeps_other_sides_and_balances_the_ledger(client, ctx, make_user, grant):
    w = world(client, make_user, grant)
    alice_id = w["alice_id"]
    assert client.delete("/api/auth/user/", headers=auth(w["alice"]), json={"password": PASSWORD}).status_code == 204

    # Signed out everywhere, and no way back in.
    assert client.get("/api/auth/user/", headers=auth(w["alice"])).status_code == 401
    for name in ("alice", "alice@example.com"):
        assert client.post("/api/auth/login/", json={"username": name, "password": PASSWORD}).status_code == 401
    db.session.expire_all()
    user = db.session.get(User, alice_id)
    assert user.deleted_at is not None and user.username == f"deleted_{alice_id}"
    assert "alice" not in user.email and user.bio == "" and user.avatar_url is None

    # Her content is gone, and the counters on Bob's post went down with it.
    assert db.session.scalar(select(func.count()).select_from(Post).where(Post.author_id == alice_id)) == 0
    assert db.session.scalar(select(func.count()).select_from(Comment).where(Comment.author_id == alice_id)) == 0
    assert db.session.scalar(select(func.count()).select_from(PostLike).where(PostLike.user_id == alice_id)) == 0
    theirs = client.get(f"/api/posts/{w['theirs']}/", headers=auth(w["bob"])).get_json()
    assert (theirs["like_count"], theirs["comment_count"]) == (0, 0)
    assert client.get(f"/api/posts/{w['mine']}/", headers=auth(w["bob"])).status_code == 404
    assert client.get(f"/api/users/{w['bob_id']}/followers/", headers=auth(w["bob"])).get_json()["results"] == []
    assert not storage().exists(w["upload"])
    assert client.get("/api/users/?q=alice", headers=auth(w["bob"])).get_json()["results"] == []
    assert client.get("/api/users/?q=deleted", headers=auth(w["bob"])).get_json()["results"] == []

    # Bob keeps the conversation; the message shows a deleted sender.
    history = client.get(f"/api/conversations/{w['chat']}/messages/", headers=auth(w["bob"])).get_json()["results"]
    assert [m["body"] for m in history] == ["hi bob"]
    assert db.session.scalar(select(Message.sender_id)) == alice_id

    # The balance is burned by a ledger entry, so the ledger still adds up; mining stopped.
    assert db.session.scalar(select(Wallet.balance).where(Wallet.user_id == alice_id)) == 0
    burn = db.session.scalar(select(LedgerEntry).where(LedgerEntry.kind == "account_deleted"))
    assert burn.amount == -1_250_000_000
    assert tokens.audit() == []
    assert mining.stats(user)["is_mining"] is False

    # The name is free again.
    again = client.post(
        "/api/auth/register/", json={"username": "alice", "email": "alice@example.com", "password": PASSWORD}
    )
    assert again.status_code == 201


def test_a_deleted_account_leaves_the_leaderboards(client, ctx, make_user):
    from bsn.models import MiningState
    from bsn.services.mining import LEADERBOARD_ALL, rebuild_leaderboards

    alice_id, alice = make_user("alice")
    bob_id, _ = make_user("bob")
    db.session.add_all([MiningState(user_id=uid, total_mined=100) for uid in (alice_id, bob_id)])
    db.session.commit()
    rebuild_leaderboards()
    assert redis_store.client.zscore(LEADERBOARD_ALL, alice_id) == 100
    assert client.delete("/api/auth/user/", headers=auth(alice), json={"password": PASSWORD}).status_code == 204
    assert redis_store.client.zscore(LEADERBOARD_ALL, alice_id) is None
    rebuild_leaderboards()
    assert redis_store.client.zscore(LEADERBOARD_ALL, alice_id) is None
    assert redis_store.client.zscore(LEADERBOARD_ALL, bob_id) == 100
