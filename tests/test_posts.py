"""Posts: create, edit, delete, visibility, lists, the feed, comments and likes."""

import pytest

from bsn.models import Role
from tests.conftest import auth


@pytest.fixture
def people(make_user):
    return {name: make_user(name) for name in ("amy", "bob", "cat")}


def post(client, token, body="hello", **extra):
    return client.post("/api/posts/", json={"body": body, **extra}, headers=auth(token))


def test_create_get_edit_delete(client, people):
    (amy_id, amy), (_, bob) = people["amy"], people["bob"]
    created = post(client, amy, "<script>x</script> #tag")
    assert created.status_code == 201
    item = created.get_json()
    assert item["body"] == "<script>x</script> #tag"  # as typed; clients insert text, never HTML
    assert item["author"]["id"] == amy_id and item["like_count"] == 0 and item["liked_by_me"] is False
    assert item["created_at"].endswith("Z") and item["edited_at"] is None
    assert client.patch(f"/api/posts/{item['id']}/", json={"body": "x"}, headers=auth(bob)).status_code == 403
    edited = client.patch(f"/api/posts/{item['id']}/", json={"body": "fixed"}, headers=auth(amy)).get_json()
    assert edited["body"] == "fixed" and edited["edited_at"]
    assert client.delete(f"/api/posts/{item['id']}/", headers=auth(bob)).status_code == 403
    assert client.delete(f"/api/posts/{item['id']}/", headers=auth(amy)).status_code == 204
    assert client.get(f"/api/posts/{item['id']}/", headers=auth(amy)).status_code == 404


def test_a_moderator_may_delete_any_post(client, people, make_user):
    _, mod = make_user("mod", role=Role.MODERATOR)
    item = post(client, people["amy"][1]).get_json()
    assert client.delete(f"/api/posts/{item['id']}/", headers=auth(mod)).status_code == 204


BAD_POSTS = [
    ({"body": ""}, "body"),
    ({"body": "x" * 5001}, "body"),
    ({"body": "x", "visibility": "secret"}, "visibility"),
    ({"body": "x", "media": ["http://insecure/x.png"]}, "media"),
    ({}, "body"),
    ({"body": "x", "client_id": ""}, "client_id"),
    ({"body": "x", "client_id": "c" * 65}, "client_id"),
    ({"body": "x", "client_id": 7}, "client_id"),
]


@pytest.mark.parametrize(("body", "field"), BAD_POSTS)
def test_bad_posts_are_refused(client, people, body, field):
    response = client.post("/api/posts/", json=body, headers=auth(people["amy"][1]))
    assert response.status_code == 422 and field in response.get_json()["error"]["fields"]


def test_a_retried_client_id_makes_one_post(client, ctx, people):
    from rq import Queue

    from bsn.extensions import redis_store

    (amy_id, amy), (_, bob) = people["amy"], people["bob"]
    first = post(client, amy, "hello @bob", client_id="p-1")
    again = post(client, amy, "changed my mind", client_id="p-1")  # a retry answers the first post, as stored
    assert first.status_code == again.status_code == 201
    assert again.get_json() == client.get(f"/api/posts/{first.get_json()['id']}/", headers=auth(amy)).get_json()
    assert again.get_json()["body"] == "hello @bob"
    plain = post(client, amy, "plain", client_id="p-2")
    assert post(client, amy, "plain", client_id="p-2").get_json()["id"] == plain.get_json()["id"]
    # Another author's client_id is theirs: the same value is a different post.
    bobs = post(client, bob, "mine", client_id="p-1").get_json()
    assert bobs["id"] != first.get_json()["id"]
    mine = client.get(f"/api/posts/?author={amy_id}", headers=auth(amy)).get_json()["results"]
    assert [p["body"] for p in mine] == ["plain", "hello @bob"]
    mentions = client.get("/api/notifications/", headers=auth(bob)).get_json()["results"]
    assert [n["kind"] for n in mentions] == ["mention"]  # the retry notified nobody again
    fan_outs = [post_id for j in Queue("high", connection=redis_store.client).jobs for post_id, _ in j.args[0]]
    assert sorted(fan_outs) == sorted([first.get_json()["id"], plain.get_json()["id"], bobs["id"]])  # once each


def test_a_post_by_someone_without_an_account_copy_stores_one_for_their_next_posts(app, client, ctx, people):
    import json

    from sqlalchemy import event

    from bsn.actors import Caller
    from bsn.extensions import db, redis_store
    from bsn.services import accounts

    amy_id, amy = people["amy"]
    key = accounts.ACCOUNT_CACHE.format(amy_id)
    redis_store.client.delete(key)  # as AUTH_CACHE_TTL after the last GET /api/auth/user/
    statements = []

    def seen(_conn, _cursor, statement, *_args):
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        first = post(client, amy, "plain text")
        assert first.status_code == 201 and first.get_json()["author"]["username"] == "amy"
        filled = redis_store.client.get(key)
        assert filled is not None
        reading_users = len([s for s in statements if "FROM users" in s])
        second = post(client, amy, "more plain text")
        assert second.status_code == 201 and second.get_json()["author"] == first.get_json()["author"]
        assert len([s for s in statements if "FROM users" in s]) == reading_users  # the copy answered
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)
    redis_store.client.delete(key)
    assert accounts.own_account(Caller(amy_id, None)) == json.loads(filled)  # the copy the ORM would store


def test_followers_only_posts_are_shown_to_followers(client, people):
    (amy_id, amy), (_, bob), (_, cat) = people["amy"], people["bob"], people["cat"]
    secret = post(client, amy, "for followers", visibility="followers").get_json()["id"]
    client.post(f"/api/users/{amy_id}/follow/", headers=auth(bob))
    assert client.get(f"/api/posts/{secret}/", headers=auth(bob)).status_code == 200
    assert client.get(f"/api/posts/{secret}/", headers=auth(cat)).status_code == 404
    assert secret not in [p["id"] for p in client.get("/api/posts/", headers=auth(cat)).get_json()["results"]]
    assert secret in [p["id"] for p in client.get("/api/posts/", headers=auth(bob)).get_json()["results"]]


def test_lists_and_the_feed_are_newest_first_and_paginated(client, people):
    (_, amy), (bob_id, bob), (_, cat) = people["amy"], people["bob"], people["cat"]
    client.post(f"/api/users/{bob_id}/follow/", headers=auth(amy))
    ids = []
    for i in range(5):
        ids.append(post(client, bob, f"bob {i}").get_json()["id"])
        post(client, cat, f"cat {i}")
    mine = post(client, amy, "mine").get_json()["id"]
    seen, cursor = [], None
    while True:
        page = client.get("/api/feed/?limit=2" + (f"&cursor={cursor}" if cursor else ""), headers=auth(amy)).get_json()
        seen += [p["id"] for p in page["results"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [mine, *reversed(ids)]
    everyone = client.get("/api/posts/?limit=100", headers=auth(amy)).get_json()["results"]
    assert len(everyone) == 11 and [p["id"] for p in everyone] == sorted((p["id"] for p in everyone), reverse=True)
    bobs = client.get(f"/api/posts/?author={bob_id}", headers=auth(amy)).get_json()["results"]
    assert [p["id"] for p in bobs] == list(reversed(ids))
    assert client.get("/api/posts/?limit=101", headers=auth(amy)).status_code == 422
    assert client.get("/api/feed/?cursor=garbage", headers=auth(amy)).status_code == 422


def test_likes_are_idempotent_and_counted(client, people):
    (_, amy), (_, bob), (_, cat) = people["amy"], people["bob"], people["cat"]
    item = post(client, amy).get_json()["id"]
    for _ in range(2):
        assert client.post(f"/api/posts/{item}/like/", headers=auth(bob)).get_json() == {
            "post_id": item,
            "like_count": 1,
            "liked_by_me": True,
        }
    client.post(f"/api/posts/{item}/like/", headers=auth(cat))
    assert client.get(f"/api/posts/{item}/", headers=auth(bob)).get_json()["like_count"] == 2
    for _ in range(2):
        assert client.delete(f"/api/posts/{item}/like/", headers=auth(bob)).get_json()["like_count"] == 1
    assert client.get("/api/posts/", headers=auth(cat)).get_json()["results"][0]["liked_by_me"] is True


def test_like_count_is_exact_under_concurrent_likes(app, client, people, make_user):
    from tests.test_concurrency import all_at_once

    item = post(client, people["amy"][1]).get_json()["id"]
    likers = [make_user()[1] for _ in range(10)]
    all_at_once(app, 20, lambda c, i: c.post(f"/api/posts/{item}/like/", headers=auth(likers[i % 10])))
    assert client.get(f"/api/posts/{item}/", headers=auth(likers[0])).get_json()["like_count"] == 10


def test_comments(client, people):
    (_, amy), (_, bob), (_, cat) = people["amy"], people["bob"], people["cat"]
    item = post(client, amy).get_json()["id"]
    first = client.post(f"/api/posts/{item}/comments/", json={"body": "nice"}, headers=auth(bob)).get_json()
    client.post(f"/api/posts/{item}/comments/", json={"body": "agreed"}, headers=auth(cat))
    listing = client.get(f"/api/posts/{item}/comments/?limit=1", headers=auth(amy)).get_json()
    assert [c["body"] for c in listing["results"]] == ["nice"] and listing["next_cursor"]
    assert client.get(f"/api/posts/{item}/", headers=auth(amy)).get_json()["comment_count"] == 2
    assert client.delete(f"/api/comments/{first['id']}/", headers=auth(cat)).status_code == 403
    assert client.delete(f"/api/comments/{first['id']}/", headers=auth(amy)).status_code == 204  # the post's author
    assert client.get(f"/api/posts/{item}/", headers=auth(amy)).get_json()["comment_count"] == 1
    assert client.post(f"/api/posts/{item}/comments/", json={"body": ""}, headers=auth(bob)).status_code == 422
    assert client.post("/api/posts/999999/comments/", json={"body": "x"}, headers=auth(bob)).status_code == 404


def test_list_endpoints_issue_a_constant_number_of_queries(app, client, people, make_user):
    from tests.helpers import count_queries

    (_, amy), (bob_id, bob) = people["amy"], people["bob"]
    client.post(f"/api/users/{bob_id}/follow/", headers=auth(amy))

    def count(path):
        return count_queries(app, client, path, amy)

    paths = [
        "/api/feed/?limit=50",
        "/api/posts/?limit=50",
        f"/api/users/{bob_id}/followers/?limit=50",
        f"/api/users/{bob_id}/",
    ]
    post(client, bob, "one")
    few = [count(p) for p in paths]
    for i in range(20):
        item = post(client, bob, f"p{i}").get_json()["id"]
        _, fan = make_user()
        client.post(f"/api/users/{bob_id}/follow/", headers=auth(fan))
        client.post(f"/api/posts/{item}/like/", headers=auth(fan))
    assert [count(p) for p in paths] == few


def test_new_posts_are_fanned_out_to_followers_by_a_job(client, ctx, people, monkeypatch):
    from rq import Queue

    from bsn import realtime
    from bsn.extensions import redis_store

    (amy_id, amy), (_, bob), (_, cat) = people["amy"], people["bob"], people["cat"]
    for token in (bob, cat):
        client.post(f"/api/users/{amy_id}/follow/", headers=auth(token))
    pushed = []
    monkeypatch.setattr(realtime, "emit", lambda event, data, namespace, room: pushed.append((event, room)))
    item = post(client, amy, "news").get_json()
    assert [e for e in pushed if e[0] == "post_created"] == []  # not inside the request
    jobs = Queue("high", connection=redis_store.client).jobs
    assert [(j.func_name, j.args) for j in jobs] == [("workers.posts.fan_out_posts", ([[item["id"], amy_id]],))]
    jobs[0].perform()
    assert [(event, sorted(rooms)) for event, rooms in pushed if event == "post_created"] == [
        ("post_created", sorted([f"user:{people['bob'][0]}", f"user:{people['cat'][0]}"]))
    ]


def test_plain_posts_that_arrive_while_a_batch_is_stored_make_the_next_batch(app, client, people, monkeypatch):
    """The group commit of plain posts: one INSERT for the posts that queued, each caller answered its own post."""
    from functools import partial

    from rq import Queue
    from sqlalchemy import event

    from bsn.extensions import db, redis_store
    from bsn.services import posts
    from tests.helpers import queue_behind_a_held_batch, recorded_statements

    with app.app_context():
        group, engine = posts._plain_posts(), db.engine
    tokens = [people[name][1] for name in ("amy", "bob", "cat")]
    answers, commits = {}, []

    def one(i):
        answers[i] = post(app.test_client(), tokens[i % 3], f"post {i}", client_id=f"b-{i}").get_json()

    def committed(_conn):
        commits.append(True)

    event.listen(engine, "commit", committed)
    try:
        with recorded_statements(app) as statements:
            sizes = queue_behind_a_held_batch(
                monkeypatch, group, partial(one, 0), [partial(one, i) for i in range(1, 8)]
            )
    finally:
        event.remove(engine, "commit", committed)
    inserts = [s for s in statements if s.lstrip().upper().startswith("INSERT INTO POSTS")]
    assert sizes == [1, 7]
    if engine.dialect.name == "postgresql":
        # One INSERT a batch, in autocommit (one statement is all or nothing), of the same text for both sizes.
        assert len(inserts) == 2 and inserts[0] == inserts[1] and not commits
    else:
        # The first alone in autocommit, the seven in one transaction, row by row.
        assert len(inserts) == 8 and len(commits) == 1
    jobs = Queue("high", connection=redis_store.client).jobs  # one fan-out job a batch
    assert [sorted(post_id for post_id, _ in job.args[0]) for job in jobs] == [
        [answers[0]["id"]],
        sorted(answers[i]["id"] for i in range(1, 8)),
    ]
    assert len({a["id"] for a in answers.values()}) == 8
    for i, answer in answers.items():
        stored = client.get(f"/api/posts/{answer['id']}/", headers=auth(tokens[i % 3])).get_json()
        assert stored["body"] == answer["body"] == f"post {i}"
        assert stored["author"]["username"] == answer["author"]["username"] == ("amy", "bob", "cat")[i % 3]


def test_a_batch_of_plain_posts_stores_each_row_as_given(app, people):
    from datetime import timedelta

    from bsn.clock import now
    from bsn.extensions import db
    from bsn.models import Post
    from bsn.services import posts

    (amy_id, _), (bob_id, _) = people["amy"], people["bob"]
    at = now()
    rows = [
        (amy_id, "one 'quoted' {brace}", "public", [], None),
        (bob_id, "two", "followers", ["/media/a.png", "/media/b.png"], "c-2"),
        (amy_id, "three\nlines", "public", ["/media/c.png"], "c-3"),
    ]
    batch = [
        dict(
            author_id=a,
            body=b,
            visibility=v,
            media=m,
            like_count=0,
            comment_count=0,
            created_at=at + timedelta(microseconds=i),
            hidden_at=None,
            client_id=c,
        )
        for i, (a, b, v, m, c) in enumerate(rows)
    ]
    with app.app_context():
        ids = posts.store_plain_posts(batch)
        assert ids == sorted(ids) and len(set(ids)) == 3
        stored = {p.id: p for p in db.session.scalars(db.select(Post).where(Post.id.in_(ids)))}
        for post_id, values in zip(ids, batch, strict=True):
            got = stored[post_id]
            assert (got.author_id, got.body, got.visibility, got.media, got.client_id, got.created_at) == (
                values["author_id"],
                values["body"],
                values["visibility"],
                values["media"],
                values["client_id"],
                values["created_at"],
            )
            assert (got.like_count, got.comment_count, got.hidden_at, got.group_id) == (0, 0, None, None)


def test_a_batch_that_fails_for_no_post_of_its_own_is_stored_one_by_one_and_told(app, people, monkeypatch, caplog):
    from bsn.clock import now
    from bsn.extensions import db
    from bsn.services import posts

    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("the one-statement batch is PostgreSQL's")

    def broken(batch):
        raise RuntimeError("a cast the schema no longer takes")

    monkeypatch.setattr(posts, "_insert_arrays", broken)
    row = dict(visibility="public", media=[], like_count=0, comment_count=0, hidden_at=None, client_id=None)
    batch = [dict(row, author_id=people["amy"][0], body=f"p{i}", created_at=now()) for i in range(2)]
    with app.app_context():
        ids = posts.store_plain_posts(batch)
    assert all(isinstance(i, int) for i in ids) and len(set(ids)) == 2
    assert "a batch of 2 plain posts failed; storing each alone" in caplog.text


def test_a_reused_client_id_in_a_batch_of_plain_posts_fails_alone(app, client, people):
    from sqlalchemy.exc import IntegrityError

    from bsn.clock import now
    from bsn.services import posts

    (amy_id, amy), (bob_id, bob) = people["amy"], people["bob"]
    first = post(client, amy, "first", client_id="dup").get_json()

    def row(author_id, body, client_id):
        return {"author_id": author_id, "body": body, "visibility": "public", "media": [], "like_count": 0}, {
            "comment_count": 0,
            "created_at": now(),
            "hidden_at": None,
            "client_id": client_id,
        }

    batch = [{**a, **b} for a, b in (row(bob_id, "b1", None), row(amy_id, "again", "dup"), row(bob_id, "b2", "x"))]
    with app.app_context():
        outcomes = posts.store_plain_posts(batch)
    b1, refused, b2 = outcomes
    assert isinstance(refused, IntegrityError) and isinstance(b1, int) and isinstance(b2, int) and b1 < b2
    mine = client.get(f"/api/posts/?author={bob_id}", headers=auth(bob)).get_json()["results"]
    assert [(p["id"], p["body"]) for p in mine] == [(b2, "b2"), (b1, "b1")]
    # Through the service, the retry answers the post stored the first time.
    assert post(client, amy, "again", client_id="dup").get_json()["id"] == first["id"]


def test_a_batch_fan_out_job_retries_only_the_posts_it_could_not_tell(client, ctx, people, monkeypatch):
    from rq import Queue

    from bsn import realtime
    from bsn.extensions import redis_store
    from bsn.services import posts

    (amy_id, amy), (bob_id, bob), (_, cat) = people["amy"], people["bob"], people["cat"]
    client.post(f"/api/users/{amy_id}/follow/", headers=auth(cat))
    client.post(f"/api/users/{bob_id}/follow/", headers=auth(cat))
    first, second = post(client, amy, "one").get_json()["id"], post(client, bob, "two").get_json()["id"]
    queue = Queue("high", connection=redis_store.client)
    queue.empty()
    job = queue.enqueue("workers.posts.fan_out_posts", [[first, amy_id], [second, bob_id]])
    told = []
    monkeypatch.setattr(realtime, "emit", lambda event, data, namespace, rooms: told.append(data["post_id"]))
    fan_out = posts.fan_out

    def down_for_the_first(event, data, author_id):
        if data["post_id"] == first:
            raise RuntimeError("the database went away")
        return fan_out(event, data, author_id)

    monkeypatch.setattr(posts, "fan_out", down_for_the_first)
    with pytest.raises(RuntimeError, match=str(first)):
        job.perform()
    assert told == [second]  # the failure did not stop the other post
    monkeypatch.setattr(posts, "fan_out", fan_out)
    again = queue.fetch_job(job.id)  # as RQ's retry runs it: the same job, its meta from Redis
    assert again.perform() == 1
    assert told == [second, first]  # the retry told only the post that had failed
