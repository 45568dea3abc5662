"""Notifications: stored in the same transaction as what they tell of, pushed after it commits."""

from __future__ import annotations

from sqlalchemy import exists, func, select, update

from bsn import realtime
from bsn.actors import Actor
from bsn.clock import isoformat
from bsn.clock import now as clock_now
from bsn.errors import ValidationError
from bsn.extensions import db
from bsn.models import Mute, Notification, NotificationPreference, User
from bsn.services.accounts import user_json

KINDS = (
    "follow",
    "like",
    "comment",
    "mention",
    "message",
    "group_request",
    "mining_stopped",
    "nft_sold",
    "proposal_closed",
)


def wanted(user_id: int, kind: str) -> bool:
    disabled = db.session.scalar(
        select(NotificationPreference.disabled).where(NotificationPreference.user_id == user_id)
    )
    return kind not in (disabled or [])


def notify(user_id: int, kind: str, actor_id: int | None = None, data: dict | None = None) -> None:
    """Add a notification to the caller's transaction (unless the user opted out of its kind)."""
    if user_id == actor_id or not wanted(user_id, kind):
        return
    if actor_id is not None and db.session.scalar(
        select(exists().where(Mute.muter_id == user_id, Mute.muted_id == actor_id))
    ):
        return  # muted: the action still happens, the muter is just not told
    notification = Notification(user_id=user_id, kind=kind, actor_id=actor_id, data=data or {}, created_at=clock_now())
    db.session.add(notification)
    db.session.flush()
    payload = {
        "id": notification.id,
        "kind": kind,
        "actor_id": actor_id,
        "data": data or {},
        "created_at": isoformat(notification.created_at),
    }
    # Counted now, inside the transaction: no SQL may run once it has committed.
    count = unread_count(user_id)
    realtime.on_commit(lambda: _push(user_id, payload, count))


def _push(user_id: int, payload: dict, count: int) -> None:
    realtime.notify_user(user_id, "notification", payload)
    realtime.notify_user(user_id, "unread_count", {"count": count})


def unread_count(user_id: int) -> int:
    return db.session.scalar(
        select(func.count()).where(Notification.user_id == user_id, Notification.read_at.is_(None))
    )


def listing(viewer: Actor, limit: int, before_id: int | None, unread_only: bool = False):
    stmt = (
        select(Notification, User)
        .outerjoin(User, User.id == Notification.actor_id)
        .where(Notification.user_id == viewer.id)
    )
    if unread_only:
        stmt = stmt.where(Notification.read_at.is_(None))
    if before_id is not None:
        stmt = stmt.where(Notification.id < before_id)
    rows = db.session.execute(stmt.order_by(Notification.id.desc()).limit(limit + 1)).all()
    page = rows[:limit]
    results = [
        {
            "id": n.id,
            "kind": n.kind,
            "actor": user_json(actor) if actor else None,
            "data": n.data,
            "read": n.read_at is not None,
            "created_at": isoformat(n.created_at),
        }
        for n, actor in page
    ]
    return results, (page[-1][0].id if len(rows) > limit else None), unread_count(viewer.id)


def mark_read(viewer: Actor, ids: list[int] | None) -> int:
    """Mark the given notifications (or all) read; returns the new unread count, pushed to the user's sockets."""
    stmt = update(Notification).where(Notification.user_id == viewer.id, Notification.read_at.is_(None))
    if ids is not None:
        stmt = stmt.where(Notification.id.in_(ids))
    db.session.execute(stmt.values(read_at=clock_now()))
    db.session.commit()
    count = unread_count(viewer.id)
    realtime.notify_user(viewer.id, "unread_count", {"count": count})
    return count


def preferences(viewer: Actor) -> dict[str, bool]:
    disabled = (
        db.session.scalar(select(NotificationPreference.disabled).where(NotificationPreference.user_id == viewer.id))
        or []
    )
    return {kind: kind not in disabled for kind in KINDS}


def _check_kinds(changes: dict[str, bool]) -> None:
    unknown = [kind for kind in changes if kind not in KINDS]
    if unknown:
        raise ValidationError(fields={kind: ["Unknown notification kind."] for kind in unknown})


def set_preferences(viewer: Actor, changes: dict[str, bool]) -> dict[str, bool]:
    _check_kinds(changes)
    current = preferences(viewer)
    current.update(changes)
    disabled = sorted(kind for kind, on in current.items() if not on)
    row = db.session.get(NotificationPreference, viewer.id)
    if row is None:
        db.session.add(NotificationPreference(user_id=viewer.id, disabled=disabled))
    else:
        row.disabled = disabled
    db.session.commit()
    return current


# ---- e-mail digests ----

DIGEST_LINES = 20  # a digest lists this many notifications and counts the rest
DIGEST_BATCH = 500  # users per query while building digests


def email_preferences(viewer: Actor) -> dict[str, bool]:
    emailed = db.session.scalar(
        select(NotificationPreference.emailed).where(NotificationPreference.user_id == viewer.id)
    )
    return {kind: kind in (emailed or []) for kind in KINDS}


def set_email_preferences(viewer: Actor, changes: dict[str, bool]) -> dict[str, bool]:
    _check_kinds(changes)
    current = email_preferences(viewer)
    current.update(changes)
    emailed = sorted(kind for kind, on in current.items() if on)
    row = db.session.get(NotificationPreference, viewer.id)
    if row is None:
        row = NotificationPreference(user_id=viewer.id, disabled=[], emailed=emailed)
        db.session.add(row)
    else:
        row.emailed = emailed
    if emailed and not row.emailed_up_to:
        # A digest tells of what happens from now on, not of the whole history.
        row.emailed_up_to = db.session.scalar(select(func.max(Notification.id))) or 0
    db.session.commit()
    return current


def _describe(kind: str, actor: User | None) -> str:
    who = f"@{actor.username}" if actor else "Someone"
    text = {
        "follow": f"{who} followed you",
        "like": f"{who} liked your post",
        "comment": f"{who} commented on your post",
        "mention": f"{who} mentioned you",
        "message": f"{who} sent you a message",
        "group_request": f"{who} asked to join your group",
        "mining_stopped": "Your mining session stopped",
        "nft_sold": "Your NFT was sold",
        "proposal_closed": "A DAO proposal you voted on closed",
    }
    return text.get(kind, kind)


def pending_digests(after_user_id: int = 0, limit: int = DIGEST_BATCH) -> list[tuple[int, list[str]]]:
    """Users (after `after_user_id`, in id order) with e-mail kinds turned on and a verified address."""
    rows = db.session.execute(
        select(NotificationPreference.user_id, NotificationPreference.emailed)
        .join(User, User.id == NotificationPreference.user_id)
        .where(
            NotificationPreference.user_id > after_user_id,
            User.email_verified_at.is_not(None),
            User.deleted_at.is_(None),
            User.suspended_at.is_(None),
        )
        .order_by(NotificationPreference.user_id)
        .limit(limit)
    ).all()
    return [(row.user_id, list(row.emailed or [])) for row in rows]


def build_digest(user_id: int):
    """The digest e-mail of a user's unread notifications of e-mailed kinds since the last digest, and its last id.

    Returns (None, None) when there is nothing new. The caller sends, then calls `digest_sent`.
    """
    from bsn.services import mail

    pref = db.session.get(NotificationPreference, user_id)
    user = db.session.get(User, user_id)
    if pref is None or not pref.emailed or user is None or user.email_verified_at is None:
        return None, None
    pending = (
        Notification.user_id == user_id,
        Notification.id > pref.emailed_up_to,
        Notification.read_at.is_(None),
        Notification.kind.in_(pref.emailed),
    )
    rows = db.session.execute(
        select(Notification, User)
        .outerjoin(User, User.id == Notification.actor_id)
        .where(*pending)
        .order_by(Notification.id)
        .limit(DIGEST_LINES)
    ).all()
    if not rows:
        return None, None
    newest, total = db.session.execute(select(func.max(Notification.id), func.count()).where(*pending)).one()
    lines = [_describe(n.kind, actor) for n, actor in rows]
    return mail.digest(user.email, user.username, lines, total - len(lines)), newest


def digest_sent(user_id: int, up_to: int) -> None:
    """Move the user's digest cursor forward (never back, whatever order two runs finish in)."""
    db.session.execute(
        update(NotificationPreference)
        .where(NotificationPreference.user_id == user_id, NotificationPreference.emailed_up_to < up_to)
        .values(emailed_up_to=up_to)
    )
    db.session.commit()
