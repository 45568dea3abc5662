"""The HTTP conventions of CONTRACT.md: error envelope, slashes, request ids, headers, CORS, body size."""

import logging
import re

import pytest

from tests.conftest import auth


def assert_envelope(response, status, code):
    assert response.status_code == status
    assert response.is_json, response.data
    error = response.get_json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert error["request_id"] == response.headers["X-Request-ID"]
    return error


def test_unknown_path_is_a_json_404(client):
    assert_envelope(client.get("/api/nope/"), 404, "not_found")


def test_wrong_method_is_a_json_405(client):
    response = client.delete("/api/auth/login/")
    assert_envelope(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


def test_invalid_json_is_a_400(client):
    response = client.post("/api/auth/login/", data="{not json", content_type="application/json")
    assert_envelope(response, 400, "invalid_json")


def test_missing_fields_are_named(client):
    error = assert_envelope(client.post("/api/auth/login/", json={}), 422, "validation_error")
    assert set(error["fields"]) == {"username", "password"}


def test_wrong_types_are_named(client):
    error = assert_envelope(
        client.post("/api/auth/login/", json={"username": 5, "password": ["x"]}), 422, "validation_error"
    )
    assert set(error["fields"]) == {"username", "password"}


def test_a_body_over_the_limit_is_413(client, app):
    big = "x" * (app.config["MAX_CONTENT_LENGTH"] + 1)
    response = client.post("/api/auth/login/", data=big, content_type="application/json")
    assert_envelope(response, 413, "request_entity_too_large")


def test_unexpected_errors_are_a_json_500_and_logged_with_the_request_id(client, make_user, monkeypatch, caplog):
    from bsn.services import accounts

    _, token = make_user()

    def boom(user, changes):
        raise RuntimeError("database on fire")

    monkeypatch.setattr(accounts, "update_profile", boom)
    with caplog.at_level(logging.ERROR):
        response = client.patch(
            "/api/auth/user/", json={"bio": "x"}, headers={**auth(token), "X-Request-ID": "req-12345678"}
        )
    error = assert_envelope(response, 500, "internal_error")
    assert "fire" not in error["message"]
    assert error["request_id"] == "req-12345678"
    records = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(getattr(r, "request_id", None) == "req-12345678" and r.exc_info for r in records)


def test_paths_work_with_and_without_the_trailing_slash(client, make_user):
    _, token = make_user()
    with_slash = client.get("/api/auth/user/", headers=auth(token))
    without = client.get("/api/auth/user", headers=auth(token))
    assert with_slash.status_code == without.status_code == 200
    post = client.post("/api/auth/login", json={"username": "nobody", "password": "whatever-it-is"})
    assert post.status_code == 401


def test_every_answer_carries_a_request_id_and_security_headers(client):
    response = client.get("/health")
    assert len(response.headers["X-Request-ID"]) >= 8
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    junk = client.get("/health", headers={"X-Request-ID": "bad id with spaces"})
    assert junk.headers["X-Request-ID"] != "bad id with spaces"
    ids = {client.get("/health").headers["X-Request-ID"] for _ in range(50)} | {response.headers["X-Request-ID"]}
    assert len(ids) == 51 and all(re.fullmatch("[0-9a-f]{32}", i) for i in ids)


def test_cors_allows_only_listed_origins(client, app):
    allowed = app.config["CORS_ORIGINS"][0]
    ok = client.options("/api/auth/user/", headers={"Origin": allowed, "Access-Control-Request-Method": "GET"})
    assert ok.headers.get("Access-Control-Allow-Origin") == allowed
    evil = client.options(
        "/api/auth/user/", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
    )
    assert "Access-Control-Allow-Origin" not in evil.headers


def test_access_log_has_no_secrets(client, caplog):
    password = "correct horse battery"
    with caplog.at_level(logging.INFO):
        response = client.post(
            "/api/auth/register/", json={"username": "eve", "email": "eve@example.com", "password": password}
        )
        token = response.get_json()["token"]
        client.get("/api/auth/user/", headers=auth(token))
    text = "\n".join(r.getMessage() + str(vars(r)) for r in caplog.records)
    assert password not in text and token not in text and "eve@example.com" not in text
    assert "/api/auth/user/" in text


def test_json_log_lines_carry_the_request_id():
    import json

    from bsn.logs import ContextFilter, JSONFormatter

    record = logging.makeLogRecord({"msg": "hello %s", "args": ("world",), "levelname": "INFO", "request_id": "r1"})
    ContextFilter().filter(record)
    line = json.loads(JSONFormatter().format(record))
    assert line["msg"] == "hello world" and line["request_id"] == "r1" and line["ts"].endswith("Z")


def test_openapi_document_is_generated_from_the_schemas(client):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    spec = response.get_json()
    assert spec["openapi"].startswith("3.")
    register = spec["paths"]["/api/auth/register/"]["post"]
    schema_ref = register["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    name = schema_ref.rsplit("/", 1)[1]
    assert set(spec["components"]["schemas"][name]["properties"]) == {"username", "email", "password"}
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_a_database_error_logs_no_parameters(client, make_user, caplog):
    _, token = make_user()
    # Over 64 bits: valid JSON that no integer column holds, so the database refuses it (text that no
    # database stores, NUL or a lone surrogate, is refused before the view runs, naming the field).
    private = 2**70 + 424242
    with caplog.at_level(logging.DEBUG):
        response = client.post(
            "/api/tokens/transfer/", json={"to_user_id": private, "amount": "1"}, headers=auth(token)
        )
    assert response.status_code == 422
    text = "\n".join(r.getMessage() + str(vars(r)) for r in caplog.records)
    assert "unstorable value" in text and str(private) not in text


def test_there_is_no_cookie_session_to_rely_on(app):
    from flask import session

    with app.test_request_context("/", headers={"Cookie": "session=forged"}):
        assert not session
        with pytest.raises(RuntimeError):
            session["user_id"] = 1


def test_the_web_process_keeps_its_start_up_objects_out_of_the_collector(app):
    import subprocess
    import sys

    from tests.helpers import ROOT, service_env

    probe = "import gc, wsgi; print(gc.get_freeze_count(), len(gc.get_objects()))"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=service_env(app), capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    frozen, tracked = map(int, out.stdout.split()[-2:])
    # A full collection scans only the tracked objects: a small fraction of what start-up made.
    assert frozen > 50_000 and tracked < frozen / 10


def test_socket_events_skip_url_matching(app):
    from flask import request

    # Flask-SocketIO builds each event's request from the handshake: nothing there to route.
    with app.test_request_context("/socket.io/?EIO=4&transport=websocket"):
        assert request.routing_exception is None and request.url_rule is None
    with app.test_request_context("/api/no-such-thing/"):
        assert request.routing_exception is not None
    with app.test_request_context("/api/posts/"):
        assert request.url_rule is not None


def test_a_forked_process_makes_request_ids_of_its_own():
    import os

    from bsn.http import request_id_for

    parent = request_id_for("")
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # gunicorn forks its workers after importing the app
        os.write(write_end, request_id_for("").encode())
        os._exit(0)
    os.waitpid(child, 0)
    assert os.read(read_end, 64).decode()[:16] != parent[:16]
