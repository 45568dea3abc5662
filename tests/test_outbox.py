"""The job outbox: a job Redis refuses after its write committed waits in the database and is enqueued later."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import redis
from rq import Queue
from sqlalchemy import select

from bsn import cache, liveness
from bsn.extensions import db, redis_store
from bsn.fastlane import SLOW
from bsn.models import OutboxJob, Post
from bsn.services import outbox
from tests.conftest import auth


def fan_out_jobs() -> list[tuple]:
    return [tuple(job.args) for job in Queue("high", connection=redis_store.client).jobs]


@pytest.fixture
def redis_refuses(monkeypatch):
    """Every batched Redis command list fails, as when Redis went away after the token check; `.back()` ends it."""
    runner = type(redis_store)
    original = runner.run_commands

    def down(self, commands):
        raise redis.ConnectionError("Redis went away")

    monkeypatch.setattr(runner, "run_commands", down)
    return SimpleNamespace(back=lambda: monkeypatch.setattr(runner, "run_commands", original))


def waiting(app) -> list[OutboxJob]:
    with app.app_context():
        rows = db.session.scalars(select(OutboxJob).order_by(OutboxJob.id)).all()
        db.session.expunge_all()
        return rows


@pytest.mark.parametrize(
    ("path", "text"),
    [("lane", "during"), ("flask", "during"), ("flask", "during the #outage")],  # the last: tags, in a transaction
)
def test_a_post_whose_fan_out_redis_refuses_is_stored_answered_and_its_job_kept(
    app, client, make_user, redis_refuses, path, text, monkeypatch
):
    amy_id, amy = make_user("amy")
    assert client.post("/api/posts/", json={"body": "warm-up"}, headers=auth(amy)).status_code == 201  # the lane learns
    with app.app_context():
        db.session.execute(db.delete(Post))
        db.session.execute(db.delete(OutboxJob))
        db.session.commit()
    flask = []
    if path == "lane":
        monkeypatch.setattr(app, "full_dispatch_request", lambda: flask.append(1))
    environ = {SLOW: True} if path == "flask" else {}
    answer = client.post("/api/posts/", json={"body": text}, headers=auth(amy), environ_base=environ)
    assert answer.status_code == 201, answer.get_json()
    assert flask == []
    post_id = answer.get_json()["id"]
    [row] = waiting(app)
    assert (row.func, row.args, row.queue, row.retries) == (
        "workers.posts.fan_out_posts",
        [[[post_id, amy_id]]],
        "high",
        2,
    )
    assert cache.GEN in row.cache_moves
    assert fan_out_jobs() == []


def test_the_flush_enqueues_what_waited_moves_its_generations_and_empties_the_outbox(
    app, client, make_user, redis_refuses
):
    amy_id, amy = make_user("amy")
    ids = [client.post("/api/posts/", json={"body": f"p{i}"}, headers=auth(amy)).get_json()["id"] for i in range(3)]
    assert len(waiting(app)) == 3
    redis_refuses.back()
    with app.app_context():
        assert liveness.status()["outbox_waiting"] == 3  # where an operator sees them
    before = redis_store.client.get(cache.GEN)
    with app.app_context():
        assert outbox.flush(batch=2) == 3  # in two batches
        assert outbox.waiting() == 0
    assert fan_out_jobs() == [([[i, amy_id]],) for i in ids]
    assert redis_store.client.get(cache.GEN) != before
    with app.app_context():
        assert outbox.flush() == 0  # nothing twice


def test_a_flush_while_redis_still_refuses_keeps_every_job(app, client, make_user, redis_refuses):
    _, amy = make_user("amy")
    for i in range(2):
        client.post("/api/posts/", json={"body": f"p{i}"}, headers=auth(amy))
    with app.app_context(), pytest.raises(redis.ConnectionError):
        outbox.flush()
    assert len(waiting(app)) == 2
    assert not redis_store.client.exists(outbox.FLUSH_LOCK)  # released: the next run tries again


def test_one_flush_at_a_time(app, client, make_user, redis_refuses):
    _, amy = make_user("amy")
    client.post("/api/posts/", json={"body": "p"}, headers=auth(amy))
    redis_refuses.back()
    held = redis_store.client.lock(outbox.FLUSH_LOCK, timeout=60)
    assert held.acquire(blocking=False)
    with app.app_context():
        assert outbox.flush() == 0
    held.release()
    with app.app_context():
        assert outbox.flush() == 1


def test_with_the_database_refusing_the_outbox_too_answers_503(app, client, make_user, redis_refuses, monkeypatch):
    from sqlalchemy.exc import OperationalError

    _, amy = make_user("amy")

    def refused(*args, **kwargs):
        raise OperationalError("INSERT", {}, Exception("database gone"))

    monkeypatch.setattr(outbox, "insert", refused)
    answer = client.post("/api/posts/", json={"body": "lost?"}, headers=auth(amy), environ_base={SLOW: True})
    assert answer.status_code == 503 and answer.get_json()["error"]["code"] == "service_unavailable"
    assert waiting(app) == []


def test_a_story_whose_fan_out_redis_refuses_is_kept_too(app, client, make_user, redis_refuses):
    amy_id, amy = make_user("amy")
    story = client.post("/api/stories/", json={"media": "https://cdn.example.com/x.jpg"}, headers=auth(amy))
    assert story.status_code == 201
    [row] = waiting(app)
    assert row.args == ["story_created", {"story_id": story.get_json()["id"], "author_id": amy_id}, amy_id]


def test_the_flush_is_a_periodic_job():
    from workers import schedule

    periodic = schedule.by_id("outbox-flush")
    assert (periodic.func, periodic.interval_setting) == ("workers.outbox.flush", "OUTBOX_FLUSH_INTERVAL")


def test_a_row_that_cannot_be_enqueued_blocks_nothing_behind_it_and_fails_the_run(
    app, client, make_user, redis_refuses
):
    _, amy = make_user("amy")
    for i in range(3):
        client.post("/api/posts/", json={"body": f"p{i}"}, headers=auth(amy))
    first, *rest = waiting(app)
    with app.app_context():
        db.session.execute(db.update(OutboxJob).where(OutboxJob.id == first.id).values(queue="nowhere"))
        db.session.commit()
    redis_refuses.back()
    with app.app_context(), pytest.raises(RuntimeError, match="1 outbox job"):
        outbox.flush(batch=1)
    assert [row.id for row in waiting(app)] == [first.id]  # kept, for an operator to look at
    assert len(fan_out_jobs()) == len(rest) == 2


def test_the_flush_reads_no_row_again_inside_a_transaction(app, client, make_user, redis_refuses):
    from sqlalchemy import event

    _, amy = make_user("amy")
    for i in range(2):
        client.post("/api/posts/", json={"body": f"p{i}"}, headers=auth(amy))
    redis_refuses.back()
    statements = []
    with app.app_context():
        engine = db.engine
        listener = lambda *args: statements.append(args[2].split()[0].upper())  # noqa: E731
        event.listen(engine, "before_cursor_execute", listener)
        try:
            assert outbox.flush() == 2
        finally:
            event.remove(engine, "before_cursor_execute", listener)
    assert statements == ["SELECT", "DELETE", "DELETE"]
