"""The cache of post lists and profiles: every kind of write is seen by the next read, races and outages included."""

from types import SimpleNamespace

import pytest
import redis

from bsn import cache
from bsn.extensions import db
from bsn.models import Follow, Role
from tests.conftest import auth

PASSWORD = "correct horse battery"


@pytest.fixture
def w(client, make_user):
    """amy reads; bob and cat write; amy follows bob; bob has a public post, cat a followers-only one."""
    people = {name: make_user(name) for name in ("amy", "bob", "cat")}
    people["mod"] = make_user("mod", role=Role.MODERATOR)
    world = SimpleNamespace(client=client, **{f"{k}_id": v[0] for k, v in people.items()}, **people)
    client.post(f"/api/users/{world.bob_id}/follow/", headers=auth(world.amy[1]))
    world.post = client.post("/api/posts/", json={"body": "hello #walks"}, headers=auth(world.bob[1])).get_json()["id"]
    world.cat_post = client.post(
        "/api/posts/", json={"body": "friends only", "visibility": "followers"}, headers=auth(world.cat[1])
    ).get_json()["id"]
    return world


def get(w, path, who="amy"):
    response = w.client.get(path, headers=auth(getattr(w, who)[1]))
    return response.get_json() if response.status_code == 200 else response.status_code


def post_of(w, path, post_id, who="amy"):
    page = get(w, path, who)
    found = [p for p in page["results"] if p["id"] == post_id]
    return found[0] if found else None


def body(w, token, method, path, **kwargs):
    response = w.client.open(path, method=method, headers=auth(token), **kwargs)
    assert response.status_code < 300, response.get_json()
    return response.get_json() if response.status_code != 204 else None


def field(path, post_attr):
    return lambda w: (post_of(w, path, w.post) or {}).get(post_attr)


def profile_of(name, attr, who="amy"):
    def read(w):
        answer = get(w, f"/api/users/{getattr(w, name + '_id')}/", who)
        return answer if isinstance(answer, int) else answer[attr]

    return read


def ids(path, who="amy"):
    return lambda w: sorted(p["id"] for p in get(w, path(w) if callable(path) else path, who)["results"])


def new_post(w):
    w.created = body(w, w.bob[1], "POST", "/api/posts/", json={"body": "news #walks"})["id"]


def new_plain_post(w):
    # No tag, mention or hold: the INSERT runs alone in autocommit.
    w.created = body(w, w.bob[1], "POST", "/api/posts/", json={"body": "plain news"})["id"]


def edit(w):
    body(w, w.bob[1], "PATCH", f"/api/posts/{w.post}/", json={"body": "edited #hills"})


def comment(w):
    w.comment = body(w, w.cat[1], "POST", f"/api/posts/{w.post}/comments/", json={"body": "nice"})["id"]


def like(token_of):
    return lambda w: body(w, getattr(w, token_of)[1], "POST", f"/api/posts/{w.post}/like/")


def act(action, target):
    def write(w):
        target_type, target_id = ("post", w.post) if target == "post" else ("user", w.bob_id)
        if target == "comment":
            target_type, target_id = "comment", w.comment
        json = {"action": action, "target_type": target_type, "target_id": target_id, "reason": "test"}
        body(w, w.mod[1], "POST", "/api/moderation/actions/", json=json)

    return write


def relation(method, who, kind, whom):
    def write(w):
        path = f"/api/users/{getattr(w, whom + '_id')}/{kind}/"
        body(w, getattr(w, who)[1], method, path)

    return write


def group_post(w):
    group = body(w, w.bob[1], "POST", "/api/groups/", json={"name": "Hikers", "description": "d", "private": False})
    body(w, w.bob[1], "POST", f"/api/groups/{group['id']}/posts/", json={"body": "in the group"})


def follow_in_the_unit_of_work(w):
    # Written straight through the ORM (as a script or another service would), not through bsn.services.users.
    with w.app.app_context():
        db.session.add(Follow(follower_id=w.amy_id, followee_id=w.cat_id))
        db.session.commit()


FEED, POSTS = "/api/feed/", "/api/posts/"

# (name, preparation, read, write, value after the write); the read runs twice before the write
# (the second answer comes from the cache) and once after it.
CASES = [
    ("create: feed", None, ids(FEED), new_post, lambda w: sorted([w.post, w.created])),
    ("create, plain: feed", None, ids(FEED), new_plain_post, lambda w: sorted([w.post, w.created])),
    ("create, plain: posts_count", None, profile_of("bob", "posts_count"), new_plain_post, 2),
    ("create: posts", None, ids(POSTS), new_post, lambda w: sorted([w.post, w.created])),
    (
        "create: ?author=",
        None,
        ids(lambda w: f"{POSTS}?author={w.bob_id}"),
        new_post,
        lambda w: sorted([w.post, w.created]),
    ),
    ("create: ?tag=", None, ids(f"{POSTS}?tag=walks"), new_post, lambda w: sorted([w.post, w.created])),
    ("create: posts_count", None, profile_of("bob", "posts_count"), new_post, 2),
    ("group post: posts_count", None, profile_of("bob", "posts_count"), group_post, 2),
    ("edit", None, field(FEED, "body"), edit, "edited #hills"),
    ("edit: ?tag= left", None, ids(f"{POSTS}?tag=walks"), edit, []),
    ("edit: ?tag= joined", None, ids(f"{POSTS}?tag=hills"), edit, lambda w: [w.post]),
    ("delete", None, ids(FEED), lambda w: body(w, w.bob[1], "DELETE", f"/api/posts/{w.post}/"), []),
    ("delete by a moderator", None, ids(POSTS), lambda w: body(w, w.mod[1], "DELETE", f"/api/posts/{w.post}/"), []),
    ("hide", None, ids(POSTS), act("hide_content", "post"), []),
    ("like", None, field(FEED, "like_count"), like("cat"), 1),
    ("like: liked_by_me", None, field(POSTS, "liked_by_me"), like("amy"), True),
    (
        "unlike",
        like("amy"),
        field(FEED, "like_count"),
        lambda w: body(w, w.amy[1], "DELETE", f"/api/posts/{w.post}/like/"),
        0,
    ),
    ("comment", None, field(FEED, "comment_count"), comment, 1),
    (
        "comment deleted",
        comment,
        field(FEED, "comment_count"),
        lambda w: body(w, w.cat[1], "DELETE", f"/api/comments/{w.comment}/"),
        0,
    ),
    ("comment hidden", comment, field(POSTS, "comment_count"), act("hide_content", "comment"), 0),
    (
        "profile change: author in lists",
        None,
        lambda w: post_of(w, FEED, w.post)["author"]["display_name"],
        lambda w: body(w, w.bob[1], "PATCH", "/api/auth/user/", json={"display_name": "Bobby"}),
        "Bobby",
    ),
    (
        "profile change: profile",
        None,
        profile_of("bob", "bio"),
        lambda w: body(w, w.bob[1], "PATCH", "/api/auth/user/", json={"bio": "walker"}),
        "walker",
    ),
    (
        "account deletion",
        None,
        ids(POSTS),
        lambda w: body(w, w.bob[1], "DELETE", "/api/auth/user/", json={"password": PASSWORD}),
        lambda w: [],
    ),
    ("suspension: profile", None, profile_of("bob", "username"), act("suspend_user", "user"), 404),
    (
        "unsuspension: profile",
        act("suspend_user", "user"),
        profile_of("bob", "username"),
        act("unsuspend_user", "user"),
        "bob",
    ),
    (
        "follow: posts",
        None,
        ids(POSTS),
        relation("POST", "amy", "follow", "cat"),
        lambda w: sorted([w.post, w.cat_post]),
    ),
    ("follow: feed", None, ids(FEED), relation("POST", "amy", "follow", "cat"), lambda w: sorted([w.post, w.cat_post])),
    (
        "follow: followed_by_me",
        None,
        profile_of("cat", "followed_by_me"),
        relation("POST", "amy", "follow", "cat"),
        True,
    ),
    (
        "follow: followers_count",
        None,
        profile_of("cat", "followers_count", "bob"),
        relation("POST", "amy", "follow", "cat"),
        1,
    ),
    (
        "follow: following_count",
        None,
        profile_of("amy", "following_count", "cat"),
        relation("POST", "amy", "follow", "cat"),
        2,
    ),
    ("follow through the ORM", None, ids(FEED), follow_in_the_unit_of_work, lambda w: sorted([w.post, w.cat_post])),
    ("unfollow: feed", None, ids(FEED), relation("DELETE", "amy", "unfollow", "bob"), []),
    (
        "unfollow: followed_by_me",
        None,
        profile_of("bob", "followed_by_me"),
        relation("DELETE", "amy", "unfollow", "bob"),
        False,
    ),
    ("block: posts", None, ids(POSTS), relation("POST", "bob", "block", "amy"), []),
    ("block: profile", None, profile_of("bob", "username"), relation("POST", "bob", "block", "amy"), 404),
    (
        "block: the blocker's followers_count",
        None,
        profile_of("bob", "followers_count", "cat"),
        relation("POST", "bob", "block", "amy"),
        0,
    ),
    (
        "unblock: profile",
        relation("POST", "bob", "block", "amy"),
        profile_of("bob", "username"),
        relation("DELETE", "bob", "block", "amy"),
        "bob",
    ),
    ("mute: feed", None, ids(FEED), relation("POST", "amy", "mute", "bob"), []),
    ("mute: muted_by_me", None, profile_of("bob", "muted_by_me"), relation("POST", "amy", "mute", "bob"), True),
    (
        "unmute: feed",
        relation("POST", "amy", "mute", "bob"),
        ids(FEED),
        relation("DELETE", "amy", "mute", "bob"),
        lambda w: [w.post],
    ),
]


@pytest.mark.parametrize(("name", "prepare", "read", "write", "expected"), CASES, ids=[c[0] for c in CASES])
def test_a_write_is_seen_by_the_next_read(app, w, name, prepare, read, write, expected):
    w.app = app
    if prepare:
        prepare(w)
    before = read(w)
    assert read(w) == before  # now from the cache
    write(w)
    want = expected(w) if callable(expected) else expected
    assert before != want, "the case does not test anything"
    assert read(w) == want


def test_reads_come_from_the_cache(app, w):
    from tests.helpers import count_queries

    for path in (FEED, POSTS):
        count_queries(app, w.client, path, w.amy[1])
        assert count_queries(app, w.client, path, w.amy[1]) == 0, path
    # A profile: the first read caches what everyone sees, the second the viewer's relations.
    profile = f"/api/users/{w.bob_id}/"
    assert [count_queries(app, w.client, profile, w.amy[1]) for _ in range(3)] == [1, 1, 0]
    assert count_queries(app, w.client, f"/api/users/{w.cat_id}/", w.amy[1]) == 1


def test_a_read_racing_a_write_cannot_bring_stale_data_back(app, w, monkeypatch):
    """The reader looks up the generations, reads the old post, the edit commits, then the reader stores."""
    real_store = cache.store
    raced = []

    def store_after_an_edit(values):
        if not raced:
            raced.append(True)
            db.session.close()  # the reader is done with the database
            edit(w)
        real_store(values)

    monkeypatch.setattr(cache, "store", store_after_an_edit)
    assert post_of(w, FEED, w.post)["body"] == "hello #walks"  # the racing read: old data
    assert raced
    assert post_of(w, FEED, w.post)["body"] == "edited #hills"
    assert post_of(w, FEED, w.post)["body"] == "edited #hills"


def test_a_profile_read_racing_a_follow_cannot_bring_stale_counts_back(app, w, monkeypatch):
    real_store = cache.store
    raced = []

    def store_after_a_follow(values):
        if not raced:
            raced.append(True)
            db.session.close()
            relation("POST", "cat", "follow", "bob")(w)
        real_store(values)

    monkeypatch.setattr(cache, "store", store_after_a_follow)
    assert profile_of("bob", "followers_count")(w) == 1
    assert raced
    assert profile_of("bob", "followers_count")(w) == 2


def test_redis_down_serves_from_the_database(app, w, monkeypatch, caplog):
    def down(*args, **kwargs):
        raise redis.ConnectionError("down")

    monkeypatch.setattr(cache, "_run", down)
    assert ids(FEED)(w) == [w.post]
    assert profile_of("bob", "followers_count")(w) == 1
    edit(w)  # the generations cannot move: the write still succeeds
    assert field(FEED, "body")(w) == "edited #hills"
    assert "not moved" in caplog.text


def test_a_rolled_back_write_moves_nothing(app, w):
    with app.app_context():
        before = cache.read((w.amy_id,), [])[0]
        db.session.add(Follow(follower_id=w.amy_id, followee_id=w.cat_id))
        db.session.flush()
        db.session.rollback()
        db.session.commit()
        assert cache.read((w.amy_id,), [])[0] == before


def test_the_cache_can_be_turned_off(app, w, monkeypatch):
    from tests.helpers import count_queries

    monkeypatch.setitem(app.config, "CACHE_TTL", 0)
    count_queries(app, w.client, FEED, w.amy[1])
    assert count_queries(app, w.client, FEED, w.amy[1]) > 0


def test_a_follow_leaves_other_viewers_cached(app, w):
    from tests.helpers import count_queries

    count_queries(app, w.client, POSTS, w.mod[1])
    relation("POST", "amy", "follow", "cat")(w)
    relation("POST", "amy", "mute", "bob")(w)
    relation("POST", "cat", "block", "bob")(w)
    assert count_queries(app, w.client, POSTS, w.mod[1]) == 0
    assert count_queries(app, w.client, POSTS, w.amy[1]) > 0


@pytest.fixture
def five(w):
    """bob has five posts: amy's feed, and the timeline, are pages of two at ?limit=2."""
    for i in range(4):
        body(w, w.bob[1], "POST", "/api/posts/", json={"body": f"more {i}"})
    return w


def pages(w, path, who="amy"):
    """Every page of `path` at ?limit=2, following next_cursor, and the statements each read sent."""
    from urllib.parse import quote

    from tests.helpers import recorded_statements

    answers, cursor = [], None
    while True:
        url = f"{path}?limit=2" + (f"&cursor={quote(cursor)}" if cursor else "")
        with recorded_statements(w.client.application) as statements:
            answer = get(w, url, who)
        answers.append((answer, len(statements)))
        cursor = answer["next_cursor"]
        if cursor is None:
            return answers


@pytest.mark.parametrize("path", [FEED, POSTS])
def test_a_missed_page_brings_the_next_one_with_it(app, five, monkeypatch, path):
    read = pages(five, path)
    assert [len(a["results"]) for a, _ in read] == [2, 2, 1]
    # Pages 1 and 3 are misses; 2 came with 1 and costs no statement.
    assert [n > 0 for _, n in read] == [True, False, True]
    # What the cache answered is what the database answers.
    monkeypatch.setitem(app.config, "CACHE_TTL", 0)
    assert [a for a, _ in pages(five, path)] == [a for a, _ in read]


def test_pages_ahead_can_be_turned_off(app, five, monkeypatch):
    monkeypatch.setitem(app.config, "CACHE_PAGES_AHEAD", 0)
    assert [n > 0 for _, n in pages(five, FEED)] == [True, True, True]


def test_a_write_after_a_page_is_seen_on_the_page_that_came_with_it(app, five):
    from urllib.parse import quote

    first = get(five, f"{FEED}?limit=2")
    second = f"{FEED}?limit=2&cursor={quote(first['next_cursor'])}"
    liked = get(five, second)["results"][0]
    assert liked["like_count"] == 0
    body(five, five.cat[1], "POST", f"/api/posts/{liked['id']}/like/")
    assert get(five, second)["results"][0]["like_count"] == 1


def test_pages_ahead_are_bounded(monkeypatch):
    from bsn.config import load_settings

    for wrong in ("-1", "11"):
        monkeypatch.setenv("CACHE_PAGES_AHEAD", wrong)
        with pytest.raises(RuntimeError, match="CACHE_PAGES_AHEAD must be between 0 and 10"):
            load_settings("/tmp")
