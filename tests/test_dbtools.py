"""dbtools.Prepared: statements run on the DBAPI cursor behave as SQLAlchemy's execute() would, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import bindparam, create_engine, insert, select
from sqlalchemy.exc import IntegrityError

from bsn.dbtools import Prepared
from bsn.extensions import db
from bsn.models import Notification
from tests.helpers import recorded_statements

_notifications = Notification.__table__
ADD = Prepared(
    insert(_notifications)
    .values(
        user_id=bindparam("uid"),
        kind=bindparam("kind"),
        data=bindparam("data", type_=_notifications.c.data.type),
        created_at=bindparam("at", type_=_notifications.c.created_at.type),
    )
    .returning(_notifications.c.id)
)


def _add(connection, uid: int, kind: str = "message", data=None, at=None) -> int:
    at = at or datetime(2026, 12, 7, 11, 0, 0, 123456, tzinfo=UTC)
    return ADD.rows(connection, {"uid": uid, "kind": kind, "data": data or {}, "at": at})[0][0]


def test_values_are_stored_as_execute_stores_them(ctx, make_user):
    uid, _ = make_user()
    at = datetime(2026, 12, 7, 11, 0, 0, 123456, tzinfo=UTC)
    connection = db.session.connection()
    id_ = _add(connection, uid, data={"seq": 3, "text": "é ✓"}, at=at)
    db.session.commit()
    stored = db.session.get(Notification, id_)
    # The ORM reads back what the driver was given: the type's bind processors ran (UTC, JSON).
    assert (stored.user_id, stored.kind, stored.data, stored.created_at) == (
        uid,
        "message",
        {"seq": 3, "text": "é ✓"},
        at,
    )


def test_a_naive_datetime_is_refused(ctx, make_user):
    uid, _ = make_user()
    with pytest.raises(ValueError, match="naive"):
        _add(db.session.connection(), uid, at=datetime(2026, 12, 7, 11, 0))
    db.session.rollback()
    assert db.session.scalar(select(Notification.id)) is None


def test_driver_errors_are_sqlalchemys_and_the_session_goes_on(ctx, make_user):
    uid, _ = make_user()
    connection = db.session.connection()
    with pytest.raises(IntegrityError):
        _add(connection, uid + 1000)  # no such user: the foreign key refuses it
    db.session.rollback()
    _add(db.session.connection(), uid)
    db.session.commit()
    assert db.session.scalars(select(Notification.user_id)).all() == [uid]


def test_the_engines_statement_events_see_it(app, make_user):
    uid, _ = make_user()
    with app.app_context(), recorded_statements(app) as statements:
        _add(db.session.connection(), uid)
        db.session.rollback()
    assert [s.split()[0] for s in statements] == ["INSERT"]


def test_run_many_runs_once_per_parameter_set(ctx, make_user):
    first, _ = make_user()
    second, _ = make_user()
    connection = db.session.connection()
    ids = [_add(connection, uid) for uid in (first, second)]
    mark_read = Prepared(
        _notifications.update()
        .where(_notifications.c.id == bindparam("nid"))
        .values(read_at=bindparam("at", type_=_notifications.c.read_at.type))
    )
    at = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    mark_read.run_many(connection, [{"nid": id_, "at": at} for id_ in ids])
    db.session.commit()
    assert db.session.scalars(select(Notification.read_at).order_by(Notification.id)).all() == [at, at]


def test_an_expanding_in_runs_through_execute(ctx, make_user):
    uids = [make_user()[0] for _ in range(3)]
    connection = db.session.connection()
    for uid in uids:
        _add(connection, uid)
    among = Prepared(
        select(_notifications.c.user_id)
        .where(_notifications.c.user_id.in_(bindparam("uids", expanding=True)))
        .order_by(_notifications.c.user_id)
    )
    assert [row[0] for row in among.rows(connection, {"uids": uids[:2]})] == uids[:2]
    assert [row[0] for row in among.rows(connection, {"uids": uids})] == uids
    db.session.rollback()


def test_a_connection_outside_a_transaction_begins_one_as_execute_would(ctx, make_user):
    uid, _ = make_user()
    with db.engine.connect() as connection:
        _add(connection, uid)
        assert connection.in_transaction()
        connection.rollback()
    assert db.session.scalar(select(Notification.id)) is None


# ---- KeptConnection ----


def _kept():
    from bsn.dbtools import KeptConnection

    return KeptConnection(db.engine)


def test_a_kept_connection_serves_one_use_after_another(ctx):
    kept = _kept()
    with kept.use() as first:
        first.execute(select(1))
        first.rollback()
    with kept.use() as second:
        assert second is first and not second.closed
    kept.close()
    assert first.closed


def test_a_kept_connection_idle_too_long_goes_back_to_the_pool(ctx, monkeypatch):
    import bsn

    kept = _kept()
    with kept.use() as first:
        pass
    monkeypatch.setattr(bsn, "PING_IDLE_AFTER", 0.0)  # any pause is too long: the pool's checks run again
    with kept.use() as second:
        assert second is not first and first.closed
    kept.close()


def test_a_use_that_fails_drops_the_connection(ctx):
    kept = _kept()
    with pytest.raises(RuntimeError, match="the pass failed"), kept.use() as first:
        raise RuntimeError("the pass failed")
    assert first.closed
    with kept.use() as second:
        assert second is not first
    kept.close()


def test_a_use_while_it_is_in_use_gets_a_connection_of_its_own(ctx):
    kept = _kept()
    with kept.use() as first, kept.use() as beside:
        assert beside is not first
    assert beside.closed and not first.closed  # the one beside was returned; the kept one stays
    kept.close()


def test_a_kept_connection_returned_after_idling_is_checked_as_idle_since_its_last_use(ctx, monkeypatch):
    import bsn
    from bsn.dbtools import KeptConnection

    engine = create_engine(db.engine.url, pool_size=1, max_overflow=0)  # one connection: the same one comes back
    pings = []
    ping = engine.dialect.do_ping
    monkeypatch.setattr(engine.dialect, "do_ping", lambda connection: pings.append(1) or ping(connection))
    try:
        kept = KeptConnection(engine)
        with kept.use() as first:
            first.execute(select(1))
            first.rollback()
        kept._last_used -= 2 * bsn.PING_IDLE_AFTER  # it sat idle that long
        with kept.use() as again:
            assert again is not first
            again.execute(select(1))
            again.rollback()
        # Back in the pool and out again at once, yet the check-out pinged it: its idle time counts from its last use.
        assert pings == [1]
        kept.close()
    finally:
        engine.dispose()
