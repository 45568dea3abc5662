"""Admin operations: the status endpoint and rq-dashboard, for admins only."""

import base64

import pytest

from bsn.models import Role
from tests.conftest import auth

PASSWORD = "correct horse battery"


def basic(username, password=PASSWORD):
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


@pytest.fixture
def people(make_user):
    return {
        "admin": make_user("root", role=Role.ADMIN),
        "moderator": make_user("mod", role=Role.MODERATOR),
        "user": make_user("plain"),
    }


def test_rq_dashboard_answers_an_admin(client, people):
    by_token = client.get("/admin/rq/", headers=auth(people["admin"][1]))
    assert by_token.status_code == 200 and b"RQ" in by_token.data
    by_basic = client.get("/admin/rq/", headers=basic("root"))
    assert by_basic.status_code == 200
    api = client.get("/admin/rq/0/data/queues.json", headers=basic("root"))
    assert api.status_code == 200 and "queues" in api.get_json()


def test_rq_dashboard_refuses_everyone_else(client, people):
    anonymous = client.get("/admin/rq/")
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Basic")
    for who in ("moderator", "user"):
        assert client.get("/admin/rq/", headers=auth(people[who][1])).status_code == 403
    assert client.get("/admin/rq/", headers=basic("plain")).status_code == 403
    assert client.get("/admin/rq/", headers=basic("root", "wrong password!")).status_code == 401
    assert client.get("/admin/rq/0/data/queues.json").status_code == 401


def test_status_endpoint_is_for_admins(client, people):
    response = client.get("/api/admin/status/", headers=auth(people["admin"][1]))
    assert response.status_code == 200
    body = response.get_json()
    assert {"checks", "schedule", "workers", "queues"} <= set(body)
    assert {row["id"] for row in body["schedule"]} >= {"mining-sweep", "ledger-audit"}
    assert client.get("/api/admin/status/", headers=auth(people["user"][1])).status_code == 403
    assert client.get("/api/admin/status/").status_code == 401
