"""Fixtures: a real private Redis, and one app per database backend (SQLite always, PostgreSQL when reachable)."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid

import psycopg
import pytest
from sqlalchemy import text

from bsn import create_app
from bsn.clock import clock
from bsn.devredis import PrivateRedis
from bsn.extensions import db, redis_store

POSTGRES_ADMIN_URL = os.environ.get("BSN_TEST_POSTGRES_URL", "postgresql://bsn:bsn@127.0.0.1:5432/postgres")


def _postgres_reachable() -> bool:
    try:
        with psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


def _backends() -> list[str]:
    wanted = os.environ.get("BSN_TEST_DATABASES", "sqlite,postgresql").split(",")
    backends = [b for b in wanted if b == "sqlite"]
    if "postgresql" in wanted:
        if _postgres_reachable():
            backends.append("postgresql")
        elif os.environ.get("BSN_REQUIRE_POSTGRES") == "1":
            raise pytest.UsageError(f"BSN_REQUIRE_POSTGRES=1 but PostgreSQL is unreachable at {POSTGRES_ADMIN_URL}")
    return backends


BACKENDS = _backends()


def pytest_report_header(config):
    return f"bsn database backends: {', '.join(BACKENDS)}"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    explicit = os.environ.get("BSN_TEST_REDIS_URL")
    if explicit:
        yield explicit
        return
    server = PrivateRedis(str(tmp_path_factory.mktemp("redis")), persist=False).start()
    yield server.url
    server.stop()


def _postgres_database():
    name = f"bsn_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{name}", name


def _drop_postgres_database(name: str) -> None:
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


TEST_SETTINGS = {
    "TESTING": True,
    # Unexpected errors answer 500 as in production (and are logged), instead of surfacing in the test.
    "PROPAGATE_EXCEPTIONS": False,
    # Cheap hashing keeps the suite fast; production keeps argon2's defaults.
    "PASSWORD_HASH_TIME_COST": 1,
    "PASSWORD_HASH_MEMORY_KIB": 1024,
    "LOG_FORMAT": "text",
    # The in-process app is one process whatever the shell exports (web processes learn theirs from gunicorn).
    "WEB_WORKERS": 1,
}


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(request, tmp_path_factory):
    if request.param == "sqlite":
        yield "sqlite:///" + str(tmp_path_factory.mktemp("sqlite") / "test.db")
        return
    url, name = _postgres_database()
    yield url
    _drop_postgres_database(name)


@pytest.fixture(scope="session")
def app(database_url, redis_url):
    from flask_migrate import upgrade

    instance = tempfile.mkdtemp(prefix="bsn-instance-")
    application = create_app(
        {**TEST_SETTINGS, "SQLALCHEMY_DATABASE_URI": _driver(database_url), "REDIS_URL": redis_url}
    )
    application.instance_path = instance
    with application.app_context():
        upgrade()
    yield application
    with application.app_context():
        db.engine.dispose()
    shutil.rmtree(instance, ignore_errors=True)


def _driver(url: str) -> str:
    from bsn.config import normalize_database_url

    return normalize_database_url(url)


@pytest.fixture(autouse=True)
def _clean_state(request):
    """Every test starts from empty tables, an empty Redis and the real clock."""
    yield
    clock.unfreeze()
    if "app" not in request.fixturenames:
        return
    application = request.getfixturevalue("app")
    with application.app_context():
        db.session.remove()
        tables = [t.name for t in reversed(db.metadata.sorted_tables)]
        if db.engine.dialect.name == "postgresql":
            db.session.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                db.session.execute(text(f"DELETE FROM {table}"))
        db.session.commit()
        redis_store.client.flushdb()


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def make_user(app):
    """Create a user straight through the service and return (user_id, bearer token)."""
    from bsn.models import Role
    from bsn.services import accounts

    counter = iter(range(1, 10_000))

    def factory(username: str | None = None, role: Role = Role.USER, password: str = "correct horse battery"):
        name = username or f"user{next(counter)}"
        with app.app_context():
            user = accounts.register(name, f"{name}@example.com", password, role=role)
            token = accounts.issue_token(user)
            return user.id, token

    return factory


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def pytest_collection_modifyitems(config, items):
    """Tests marked postgresql_only run once, on PostgreSQL, and not at all without it."""
    kept, dropped = [], []
    for item in items:
        backend = getattr(item, "callspec", None) and item.callspec.params.get("database_url")
        if item.get_closest_marker("postgresql_only") and backend != "postgresql":
            dropped.append(item)
        else:
            kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture
def pair(client, make_user):
    """Ann and Ben, and the direct conversation between them."""
    ann_id, ann = make_user("ann")
    ben_id, ben = make_user("ben")
    chat = client.post("/api/conversations/", json={"user_ids": [ben_id]}, headers=auth(ann)).get_json()["id"]
    return {"ann": (ann_id, ann), "ben": (ben_id, ben), "chat": chat}


@pytest.fixture
def grant(app):
    """Give a user tokens through a real ledger entry."""
    from bsn.amounts import to_units
    from bsn.services import tokens

    def give(user_id: int, amount: str) -> None:
        with app.app_context():
            tokens.post(user_id, to_units(amount), "grant")
            db.session.commit()

    return give
