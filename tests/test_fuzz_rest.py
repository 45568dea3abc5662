"""Property-based fuzzing of the whole REST API from its own OpenAPI document, with schemathesis.

Every operation of /api/openapi.json gets valid and invalid requests (body, query, path) from a
real user's bearer token, in a database seeded with real rows so that ids in paths hit them some of
the time. Every answer must be documented: no 5xx, a listed status code, a body matching its schema,
the right content type; an invalid body must be refused (4xx) and must change nothing in the database.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation import GenerationMode
from sqlalchemy import event

from bsn.extensions import db, limiter
from bsn.http import MAX_ID
from tests import world as world_module

# Fixed seed, derandomized generation and no example database: CI and every machine send the same
# requests, so a failure found once is found again. The budget keeps the run near a minute per backend;
# BSN_FUZZ_EXAMPLES=200 digs deeper (locally, before a release).
CONFIG = SchemathesisConfig.from_dict(
    {
        "seed": 20261121,
        "generation": {
            "mode": "all",
            "max-examples": int(os.environ.get("BSN_FUZZ_EXAMPLES", "10")),
            "deterministic": True,
            "database": "none",
            # The bearer token is always the seeded user's: a generated (broken) one would test nothing else.
            "with-security-parameters": False,
            # Unknown query parameters are ignored on purpose (cache-busters, newer clients); unknown body
            # fields are refused (422), which the coverage phase still checks.
            "allow-extra-parameters": False,
        },
        "phases": {
            "stateful": {"enabled": False},
            # One probe of a method no operation has is enough to see the 405 envelope on every path.
            "coverage": {"unexpected-methods": ["PUT"]},
        },
        "checks": {
            # Business rules refuse some schema-valid bodies with 422 validation_error (a weak password,
            # an end before the start, a cursor that was not issued, a user id that names nobody).
            "positive_data_acceptance": {"expected-statuses": ["2xx", "401", "403", "404", "409", "422", "429"]},
        },
    }
)

# Path parameters that name a seeded row: a generated id is swapped for a real one half the time.
REAL_IDS = {
    "user_id": ("user_id",),
    "post_id": ("post_id", "followers_post_id"),
    "comment_id": ("comment_id", "other_comment_id"),
    "story_id": ("story_id",),
    "upload_id": ("upload_id",),
    "group_id": ("group_id", "private_group_id"),
    "event_id": ("event_id",),
    "conversation_id": ("conversation_id", "group_conversation_id"),
    "message_id": ("message_id",),
    "collection_id": ("collection_id",),
    "nft_id": ("nft_id", "listed_nft_id"),
    "listing_id": ("listing_id",),
    "proposal_id": ("proposal_id",),
}


@pytest.fixture(autouse=True)
def _schemathesis_node_id(request):
    # schemathesis 4.32 renames the running test after each operation through `node._nodeid`, an
    # attribute pytest 9 no longer has; without it the lazy schema fails before the first request.
    request.node._nodeid = request.node.nodeid


@pytest.fixture
def fuzz_world(app, client, make_user, grant, monkeypatch):
    # Thousands of calls from one user in a minute would turn most answers into 429 rate_limited,
    # which says nothing about the endpoint; the limits have their own tests (test_ratelimits.py).
    monkeypatch.setattr(limiter, "enabled", False)
    monkeypatch.setitem(app.config, "HEARTBEAT_RATE_LIMIT", "100000 per minute")
    return world_module.build(client, make_user, grant)


@pytest.fixture
def api_schema(app, fuzz_world):
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app, config=CONFIG)

    @schema.hook
    def flatmap_path_parameters(context, path_parameters):
        if not path_parameters:
            return st.just(path_parameters)
        options = {}
        for name, value in path_parameters.items():
            # Only a valid id is swapped: an invalid one (negative, too large, not a number) stays as the test of it.
            real = [fuzz_world.ids[key] for key in REAL_IDS.get(name, ())] if _valid_id(name, value) else []
            options[name] = st.sampled_from([value, *real]) if real else st.just(value)
        return st.fixed_dictionaries(options)

    return schema


# /ready answers 503 by design when no worker or scheduler runs (none does here); test_ops covers it.
def _valid_id(name: str, value) -> bool:
    if name == "upload_id":
        return isinstance(value, str) and value != ""
    text = str(value)
    return not isinstance(value, bool) and text.isdigit() and int(text) <= MAX_ID


schema = schemathesis.pytest.from_fixture("api_schema").exclude(path="/ready")


class CommittedWrites:
    """The INSERT, UPDATE and DELETE statements that reached a COMMIT while it listens.

    Cheaper than comparing the whole database around each of a thousand calls, and stricter: a write
    that is committed and then undone, or that rewrites a value with itself, is caught as well.
    """

    WRITES = ("insert", "update", "delete")

    def __init__(self, engine):
        self.engine = engine
        self.committed: list[str] = []

    def _statement(self, conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().lower().startswith(self.WRITES):
            conn.info.setdefault("fuzz_writes", []).append(statement)

    def _commit(self, conn):
        self.committed.extend(conn.info.pop("fuzz_writes", []))

    def _rollback(self, conn):
        conn.info.pop("fuzz_writes", None)

    def __enter__(self):
        event.listen(self.engine, "before_cursor_execute", self._statement)
        event.listen(self.engine, "commit", self._commit)
        event.listen(self.engine, "rollback", self._rollback)
        return self

    def __exit__(self, *exc):
        event.remove(self.engine, "before_cursor_execute", self._statement)
        event.remove(self.engine, "commit", self._commit)
        event.remove(self.engine, "rollback", self._rollback)


def _invalid_body(case) -> bool:
    meta = case._meta
    component = meta.components.get(ParameterLocation.BODY) if meta else None
    return component is not None and component.mode == GenerationMode.NEGATIVE


@schema.parametrize()
@settings(database=None, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_as_documented(case, app, fuzz_world):
    token = fuzz_world.owner_token
    if case.path == "/api/auth/logout/":
        # Logging out would revoke the token every later call uses: this call gets one of its own.
        from bsn.models import User
        from bsn.services import accounts

        with app.app_context():
            token = accounts.issue_token(db.session.get(User, fuzz_world.owner_id))
    headers = {"Authorization": f"Bearer {token}"}
    if not _invalid_body(case):
        case.call_and_validate(headers=headers)
        return
    with app.app_context():
        engine = db.engine
    with CommittedWrites(engine) as writes:
        response = case.call_and_validate(headers=headers)
    assert not writes.committed, f"an invalid body was stored ({response.status_code}): {writes.committed}"


# -- what the fuzzer found, kept as plain regression tests ------------------------------------------------------------


def test_an_id_too_large_for_the_database_is_not_found_whatever_the_method(client, make_user):
    _, token = make_user()
    headers = {"Authorization": f"Bearer {token}"}
    for method in ("GET", "PATCH", "DELETE"):
        response = client.open(f"/api/posts/{2**63}/", method=method, json={}, headers=headers)
        assert response.status_code == 404, (method, response.get_json())
        assert response.get_json()["error"]["code"] == "not_found"


def test_a_number_too_large_in_a_body_is_refused(client, make_user):
    _, token = make_user()
    response = client.post(
        "/api/conversations/", json={"user_ids": [2**70]}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "validation_error"


def test_a_json_boolean_must_be_a_boolean(client, make_user):
    _, token = make_user()
    response = client.post(
        "/api/groups/", json={"name": "g", "private": 0}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 422
    assert "private" in response.get_json()["error"]["fields"]


def test_errors_are_documented_with_the_envelope_they_have(client):
    spec = client.get("/api/openapi.json").get_json()
    operation = spec["paths"]["/api/posts/{post_id}/"]["delete"]
    assert "default" not in operation["responses"]
    assert {"401", "403", "404", "409", "429"} <= operation["responses"].keys()
    envelope = spec["components"]["schemas"]["Error"]
    assert envelope["required"] == ["error"]


@pytest.mark.parametrize("text", ["a\\ud800b", "a\\u0000b"], ids=["lone surrogate", "NUL"])
def test_text_no_database_can_store_is_refused_by_name(client, make_user, text):
    # Valid JSON escapes: a lone surrogate answered 500 on both databases; NUL was kept by SQLite and
    # refused mid-transaction by PostgreSQL.
    _, token = make_user()
    response = client.post(
        "/api/posts/",
        data='{"body": "' + text + '"}',
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 422
    assert response.get_json()["error"]["fields"] == {
        "body": ["Must not contain NUL characters or unpaired surrogates."]
    }
