"""Access control of every REST endpoint with an id in its path, as a matrix kept as data.

User A owns one of every kind of resource (tests/world.py). Each endpoint is called on A's resource
by four kinds of caller, and each must get exactly the status the permissions say:

- stranger: an ordinary user with no tie to A (not a follower, not a member, not in a chat);
- suspended: a user suspended by a moderator; suspension revokes every token, so the old token is
  refused with 401 everywhere a token is needed (a new login answers 403 account_suspended);
- moderator: a user with the moderator role, who may delete any post or comment and nothing else
  of other people's (groups, chats, NFTs, stories stay their owners');
- anonymous: no token (401, except what is public by design: uploads and NFT metadata).

Each path parameter names one of A's rows (TARGETS). A new endpoint with an id that is missing from
MATRIX fails test_every_id_endpoint_is_in_the_matrix.
"""

from __future__ import annotations

import re

import pytest

from bsn.models import Role
from tests import world as world_module

CALLERS = ("stranger", "suspended", "moderator", "anonymous")

# (method, rule) -> the status each caller gets, in the order of CALLERS.
MATRIX: dict[tuple[str, str], tuple[int, int, int, int]] = {
    # people: A's profile and social graph are public
    ("GET", "/api/users/<int:user_id>/"): (200, 401, 200, 401),
    ("POST", "/api/users/<int:user_id>/follow/"): (200, 401, 200, 401),
    ("DELETE", "/api/users/<int:user_id>/unfollow/"): (200, 401, 200, 401),
    ("POST", "/api/users/<int:user_id>/block/"): (200, 401, 200, 401),
    ("DELETE", "/api/users/<int:user_id>/block/"): (200, 401, 200, 401),
    ("POST", "/api/users/<int:user_id>/mute/"): (200, 401, 200, 401),
    ("DELETE", "/api/users/<int:user_id>/mute/"): (200, 401, 200, 401),
    ("GET", "/api/users/<int:user_id>/followers/"): (200, 401, 200, 401),
    ("GET", "/api/users/<int:user_id>/following/"): (200, 401, 200, 401),
    # A's followers-only post: a stranger (or a moderator) must not learn it exists, but a moderator may delete it
    ("GET", "/api/posts/<int:post_id>/"): (404, 401, 404, 401),
    ("PATCH", "/api/posts/<int:post_id>/"): (404, 401, 404, 401),
    ("DELETE", "/api/posts/<int:post_id>/"): (404, 401, 204, 401),
    ("GET", "/api/posts/<int:post_id>/comments/"): (404, 401, 404, 401),
    ("POST", "/api/posts/<int:post_id>/comments/"): (404, 401, 404, 401),
    ("POST", "/api/posts/<int:post_id>/like/"): (404, 401, 404, 401),
    ("DELETE", "/api/posts/<int:post_id>/like/"): (404, 401, 404, 401),
    # A's own comment on A's public post
    ("DELETE", "/api/comments/<int:comment_id>/"): (403, 401, 204, 401),
    # uploads are public by URL (images are embedded); stories are seen by anyone who has one, viewers by A only
    ("GET", "/api/uploads/<string:upload_id>"): (200, 200, 200, 200),
    ("POST", "/api/stories/<int:story_id>/view/"): (200, 401, 200, 401),
    ("POST", "/api/stories/<int:story_id>/react/"): (200, 401, 200, 401),
    ("GET", "/api/stories/<int:story_id>/viewers/"): (403, 401, 403, 401),
    # A's private group: anyone sees that it exists and may ask to join; members only see inside
    ("GET", "/api/groups/<int:group_id>/"): (200, 401, 200, 401),
    ("POST", "/api/groups/<int:group_id>/join/"): (200, 401, 200, 401),
    ("POST", "/api/groups/<int:group_id>/leave/"): (200, 401, 200, 401),
    ("GET", "/api/groups/<int:group_id>/members/"): (403, 401, 403, 401),
    ("POST", "/api/groups/<int:group_id>/requests/<int:user_id>/approve/"): (403, 401, 403, 401),
    ("POST", "/api/groups/<int:group_id>/requests/<int:user_id>/reject/"): (403, 401, 403, 401),
    ("POST", "/api/groups/<int:group_id>/members/<int:user_id>/role/"): (403, 401, 403, 401),
    ("GET", "/api/groups/<int:group_id>/posts/"): (403, 401, 403, 401),
    ("POST", "/api/groups/<int:group_id>/posts/"): (403, 401, 403, 401),
    ("GET", "/api/groups/<int:group_id>/events/"): (403, 401, 403, 401),
    ("POST", "/api/groups/<int:group_id>/events/"): (403, 401, 403, 401),
    ("POST", "/api/groups/<int:group_id>/events/<int:event_id>/rsvp/"): (403, 401, 403, 401),
    ("GET", "/api/groups/<int:group_id>/files/"): (403, 401, 403, 401),
    ("POST", "/api/groups/<int:group_id>/files/"): (403, 401, 403, 401),
    # A's group chat with B, and A's message in it: for members only, and hidden (404) from everyone else
    ("POST", "/api/conversations/<int:conversation_id>/members/"): (404, 401, 404, 401),
    ("DELETE", "/api/conversations/<int:conversation_id>/members/<int:user_id>/"): (404, 401, 404, 401),
    ("GET", "/api/conversations/<int:conversation_id>/messages/"): (404, 401, 404, 401),
    ("POST", "/api/conversations/<int:conversation_id>/messages/"): (404, 401, 404, 401),
    ("POST", "/api/conversations/<int:conversation_id>/read/"): (404, 401, 404, 401),
    ("PATCH", "/api/messages/<int:message_id>/"): (404, 401, 404, 401),
    ("DELETE", "/api/messages/<int:message_id>/"): (404, 401, 404, 401),
    ("POST", "/api/messages/<int:message_id>/reactions/"): (404, 401, 404, 401),
    ("DELETE", "/api/messages/<int:message_id>/reactions/"): (404, 401, 404, 401),
    # A's NFTs are public; only A may mint, give, list or cancel; buying needs funds (the callers have none)
    ("GET", "/api/nft/collections/<int:collection_id>/"): (200, 401, 200, 401),
    ("POST", "/api/nft/collections/<int:collection_id>/mint/"): (403, 401, 403, 401),
    ("GET", "/api/nft/collections/<int:collection_id>/tokens/"): (200, 401, 200, 401),
    ("GET", "/api/nft/tokens/<int:nft_id>/"): (200, 401, 200, 401),
    ("GET", "/api/nft/tokens/<int:nft_id>/metadata"): (200, 200, 200, 200),
    ("GET", "/api/nft/tokens/<int:nft_id>/history/"): (200, 401, 200, 401),
    ("POST", "/api/nft/tokens/<int:nft_id>/transfer/"): (403, 401, 403, 401),
    ("POST", "/api/nft/tokens/<int:nft_id>/list/"): (403, 401, 403, 401),
    ("POST", "/api/nft/listings/<int:listing_id>/cancel/"): (403, 401, 403, 401),
    ("POST", "/api/nft/listings/<int:listing_id>/buy/"): (409, 401, 409, 401),
    ("GET", "/api/nft/users/<int:user_id>/holdings/"): (200, 401, 200, 401),
    # A's DAO proposal: every member reads it; voting needs tokens held when the vote started
    ("GET", "/api/dao/proposals/<int:proposal_id>/"): (200, 401, 200, 401),
    ("POST", "/api/dao/proposals/<int:proposal_id>/vote/"): (403, 401, 403, 401),
    ("GET", "/api/dao/proposals/<int:proposal_id>/votes/"): (200, 401, 200, 401),
}

# Which of the world's rows a path parameter names (by default the row of the same name).
TARGETS = {
    "user_id": "owner_id",
    "post_id": "followers_post_id",
    "group_id": "private_group_id",
    "conversation_id": "group_conversation_id",
}
# Rules whose user is B, the other party of A's resource: the member A could remove, the join request A decides.
USER_IS_B = {
    "/api/groups/<int:group_id>/requests/<int:user_id>/approve/",
    "/api/groups/<int:group_id>/requests/<int:user_id>/reject/",
    "/api/conversations/<int:conversation_id>/members/<int:user_id>/",
}
# Valid bodies, so that what is tested is the permission and not the input ("{caller_id}": the caller's id).
BODIES = {
    ("PATCH", "/api/posts/<int:post_id>/"): {"body": "mine now"},
    ("POST", "/api/posts/<int:post_id>/comments/"): {"body": "hi"},
    ("POST", "/api/stories/<int:story_id>/react/"): {"emoji": "*"},
    ("POST", "/api/groups/<int:group_id>/members/<int:user_id>/role/"): {"role": "member"},
    ("POST", "/api/groups/<int:group_id>/posts/"): {"body": "hi"},
    ("POST", "/api/groups/<int:group_id>/events/"): {"title": "party", "starts_at": "2030-01-01T10:00:00Z"},
    ("POST", "/api/groups/<int:group_id>/events/<int:event_id>/rsvp/"): {"status": "going"},
    ("POST", "/api/groups/<int:group_id>/files/"): {"upload_id": "{upload_id}", "name": "x.png"},
    ("POST", "/api/conversations/<int:conversation_id>/members/"): {"user_ids": ["{caller_id}"]},
    ("POST", "/api/conversations/<int:conversation_id>/messages/"): {"body": "let me in"},
    ("POST", "/api/conversations/<int:conversation_id>/read/"): {},
    ("PATCH", "/api/messages/<int:message_id>/"): {"body": "edited"},
    ("POST", "/api/messages/<int:message_id>/reactions/"): {"emoji": "*"},
    ("POST", "/api/nft/collections/<int:collection_id>/mint/"): {"name": "x", "image": "https://example.com/x.png"},
    ("POST", "/api/nft/tokens/<int:nft_id>/transfer/"): {"to_user_id": "{caller_id}"},
    ("POST", "/api/nft/tokens/<int:nft_id>/list/"): {"price": "1"},
    ("POST", "/api/dao/proposals/<int:proposal_id>/vote/"): {"option": 1},
}


def id_rules(app) -> set[tuple[str, str]]:
    """Every (method, rule) under /api/ whose path takes a value."""
    found = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/") and rule.arguments and not rule.endpoint.endswith("static"):
            found.update((method, rule.rule) for method in rule.methods - {"HEAD", "OPTIONS"})
    return found


def test_every_id_endpoint_is_in_the_matrix(app):
    rules = id_rules(app)
    missing = sorted(rules - MATRIX.keys())
    assert not missing, f"add these endpoints to MATRIX with the status each caller must get: {missing}"
    assert not sorted(MATRIX.keys() - rules), "MATRIX names endpoints that no longer exist"


@pytest.fixture
def callers(app, client, make_user, grant):
    world = world_module.build(client, make_user, grant)
    stranger_id, stranger = make_user("stranger")
    moderator_id, moderator = make_user("moderator", role=Role.MODERATOR)
    suspended_id, suspended = make_user("suspended")
    answer = client.post(
        "/api/moderation/actions/",
        json={"action": "suspend_user", "target_type": "user", "target_id": suspended_id, "reason": "spam"},
        headers={"Authorization": f"Bearer {moderator}"},
    )
    assert answer.status_code == 201, answer.get_json()
    return world, {
        "stranger": (stranger_id, stranger),
        "suspended": (suspended_id, suspended),
        "moderator": (moderator_id, moderator),
        "anonymous": (None, None),
    }


def _fill(value, names):
    if isinstance(value, str):
        filled = value.format(**names)
        return int(filled) if value.startswith("{") and filled.isdigit() else filled
    if isinstance(value, list):
        return [_fill(v, names) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, names) for k, v in value.items()}
    return value


@pytest.mark.parametrize("key", sorted(MATRIX), ids=lambda key: f"{key[0]} {key[1]}")
def test_each_caller_gets_what_the_permissions_say(client, callers, key):
    world, kinds = callers
    method, rule = key
    body = BODIES.get(key)
    got = {}
    for kind in CALLERS:
        caller_id, token = kinds[kind]
        names = {**world.ids, "owner_id": world.owner_id, "other_id": world.other_id, "caller_id": caller_id}
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = client.open(
            _path(rule, names), method=method, json=_fill(body, names) if body is not None else None, headers=headers
        )
        got[kind] = response.status_code
    assert got == dict(zip(CALLERS, MATRIX[key], strict=True))


def _path(rule: str, names: dict) -> str:
    def target(match):
        name = match.group(1)
        if name == "user_id" and rule in USER_IS_B:
            return str(names["other_id"])
        return str(names[TARGETS.get(name, name)])

    return re.sub(r"<(?:\w+:)?(\w+)>", target, rule)


def test_every_status_in_the_matrix_is_documented(client):
    spec = client.get("/api/openapi.json").get_json()
    undocumented = []
    for (method, rule), statuses in MATRIX.items():
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule)
        documented = spec["paths"][path][method.lower()]["responses"]
        undocumented += [(method, rule, status) for status in statuses if str(status) not in documented]
    assert not undocumented


def test_a_suspended_user_cannot_log_in_again(client, callers):
    response = client.post("/api/auth/login/", json={"username": "suspended", "password": "correct horse battery"})
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "account_suspended"
