"""Groups: public or private, join requests approved by group admins, roles, group posts, events, files."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select, update

from bsn.actors import Actor
from bsn.clock import isoformat
from bsn.clock import now as clock_now
from bsn.dbtools import get_or_404, insert_ignore, newest_first
from bsn.errors import Conflict, Forbidden, NotFound, ValidationError
from bsn.extensions import db
from bsn.models import EventRsvp, Group, GroupEvent, GroupFile, GroupMember, Post, Upload, User
from bsn.services import moderation, notifications
from bsn.services.accounts import user_json

ADMIN_ROLES = ("owner", "admin")


def _membership(group_id: int, user_id: int) -> GroupMember | None:
    return db.session.scalar(
        select(GroupMember).where(GroupMember.group_id == group_id, GroupMember.user_id == user_id)
    )


def _active(group: Group, user_id: int) -> GroupMember | None:
    member = _membership(group.id, user_id)
    return member if member is not None and member.status == "active" else None


def _readable(actor: Actor, group_id: int) -> Group:
    """The group, if the actor may read its content: anyone for a public group, members for a private one."""
    group = get_or_404(Group, group_id, "group")
    if group.private and _active(group, actor.id) is None:
        raise Forbidden("This group is private: members only.", code="private_group")
    return group


def _admin(actor: Actor, group_id: int) -> Group:
    group = get_or_404(Group, group_id, "group")
    member = _active(group, actor.id)
    if member is None or member.role not in ADMIN_ROLES:
        raise Forbidden("Group admins only.")
    return group


def create_group(owner: Actor, name: str, description: str = "", private: bool = False) -> dict:
    group = Group(name=name, description=description, private=private, owner_id=owner.id)
    db.session.add(group)
    db.session.flush()
    db.session.add(GroupMember(group_id=group.id, user_id=owner.id, role="owner", status="active"))
    db.session.commit()
    return group_json(group, owner)


def group_json(group: Group, viewer: Actor) -> dict:
    member = _membership(group.id, viewer.id)
    count = db.session.scalar(
        select(func.count()).where(GroupMember.group_id == group.id, GroupMember.status == "active")
    )
    return {
        "id": group.id,
        "name": group.name,
        "description": group.description,
        "private": group.private,
        "owner_id": group.owner_id,
        "member_count": count,
        "my_role": member.role if member and member.status == "active" else None,
        "my_status": member.status if member else None,
        "created_at": isoformat(group.created_at),
    }


def get_group(viewer: Actor, group_id: int) -> dict:
    """Name and description are visible to all, so people can ask to join a private group."""
    return group_json(get_or_404(Group, group_id, "group"), viewer)


def list_groups(viewer: Actor, limit: int, before_id: int | None):
    page, more = newest_first(select(Group), Group.id, limit, before_id)
    return [group_json(g, viewer) for g in page], (page[-1].id if more else None)


def join(user: Actor, group_id: int) -> dict:
    """A public group: a member at once. A private one: a request that a group admin approves."""
    group = get_or_404(Group, group_id, "group")
    status = "pending" if group.private else "active"
    added = insert_ignore(
        GroupMember,
        [{"group_id": group_id, "user_id": user.id, "role": "member", "status": status, "joined_at": clock_now()}],
        ["group_id", "user_id"],
    )
    if added and group.private:
        admins = select(GroupMember.user_id).where(
            GroupMember.group_id == group_id, GroupMember.role.in_(ADMIN_ROLES), GroupMember.status == "active"
        )
        for admin_id in db.session.scalars(admins):
            notifications.notify(admin_id, "group_request", user.id, {"group_id": group_id})
    db.session.commit()
    return group_json(group, user)


def leave(user: Actor, group_id: int) -> dict:
    group = get_or_404(Group, group_id, "group")
    member = _membership(group_id, user.id)
    if member is not None and member.role == "owner":
        raise Conflict("The owner cannot leave; hand the group over first.", code="owner_cannot_leave")
    db.session.execute(delete(GroupMember).where(GroupMember.group_id == group_id, GroupMember.user_id == user.id))
    db.session.commit()
    return group_json(group, user)


def decide_request(admin: Actor, group_id: int, user_id: int, approve: bool) -> dict:
    group = _admin(admin, group_id)
    where = (GroupMember.group_id == group_id, GroupMember.user_id == user_id, GroupMember.status == "pending")
    if approve:
        changed = db.session.execute(update(GroupMember).where(*where).values(status="active")).rowcount
    else:
        changed = db.session.execute(delete(GroupMember).where(*where)).rowcount
    if not changed:
        db.session.rollback()
        raise NotFound("No pending request from that user.")
    db.session.commit()
    return group_json(group, admin)


def set_role(admin: Actor, group_id: int, user_id: int, role: str) -> None:
    group = _admin(admin, group_id)
    if role not in ("admin", "member"):
        raise ValidationError(fields={"role": ["admin or member."]})
    member = _active(group, user_id)
    if member is None:
        raise NotFound("Not a member.")
    if member.role == "owner":
        raise Conflict("The owner's role does not change.", code="owner_role")
    member.role = role
    db.session.commit()


def members(viewer: Actor, group_id: int, limit: int, after_id: int | None, pending: bool = False):
    group = _admin(viewer, group_id) if pending else _readable(viewer, group_id)
    stmt = (
        select(GroupMember, User)
        .join(User, User.id == GroupMember.user_id)
        .where(GroupMember.group_id == group.id, GroupMember.status == ("pending" if pending else "active"))
        .order_by(GroupMember.id)
    )
    if after_id is not None:
        stmt = stmt.where(GroupMember.id > after_id)
    rows = db.session.execute(stmt.limit(limit + 1)).all()
    page = rows[:limit]
    results = [{**user_json(u), "role": m.role, "joined_at": isoformat(m.joined_at)} for m, u in page]
    return results, (page[-1][0].id if len(rows) > limit else None)


# ---- group posts, events, files ----


def create_group_post(author: Actor, group_id: int, body: str) -> dict:
    group = get_or_404(Group, group_id, "group")
    if _active(group, author.id) is None:
        raise Forbidden("Members only.")
    from bsn.services import posts

    body = posts.check_body(body)
    if moderation.screen(body) == moderation.HOLD:
        raise ValidationError("This post was not accepted by auto-moderation.", fields={"body": ["Not accepted."]})
    post = Post(author_id=author.id, body=body, visibility="public", media=[], group_id=group_id)
    db.session.add(post)
    db.session.commit()
    return posts.item(post, db.session.get(User, author.id), liked=False)


def group_posts(viewer: Actor, group_id: int, limit: int, cursor):
    _readable(viewer, group_id)
    from bsn.services import posts

    return posts.group_page(viewer, group_id, limit, cursor)


def create_event(author: Actor, group_id: int, title: str, starts_at: datetime, location: str = "") -> dict:
    group = get_or_404(Group, group_id, "group")
    if _active(group, author.id) is None:
        raise Forbidden("Members only.")
    event = GroupEvent(group_id=group_id, title=title, starts_at=starts_at, location=location, created_by=author.id)
    db.session.add(event)
    db.session.commit()
    return event_json(event)


def events(viewer: Actor, group_id: int) -> list[dict]:
    _readable(viewer, group_id)
    rows = db.session.scalars(
        select(GroupEvent).where(GroupEvent.group_id == group_id).order_by(GroupEvent.starts_at).limit(200)
    ).all()
    counts: dict[tuple[int, str], int] = {}
    if rows:
        tally = db.session.execute(
            select(EventRsvp.event_id, EventRsvp.status, func.count())
            .where(EventRsvp.event_id.in_([e.id for e in rows]))
            .group_by(EventRsvp.event_id, EventRsvp.status)
        )
        counts = {(event_id, status): n for event_id, status, n in tally}
    return [{**event_json(e), "rsvps": {s: counts.get((e.id, s), 0) for s in ("going", "maybe", "no")}} for e in rows]


def rsvp(user: Actor, group_id: int, event_id: int, status: str) -> dict:
    group = get_or_404(Group, group_id, "group")
    event = db.session.get(GroupEvent, event_id)
    if event is None or event.group_id != group_id:
        raise NotFound("No such event.")
    if _active(group, user.id) is None:
        raise Forbidden("Members only.")
    insert_ignore(EventRsvp, [{"event_id": event_id, "user_id": user.id, "status": status}], ["event_id", "user_id"])
    db.session.execute(
        update(EventRsvp).where(EventRsvp.event_id == event_id, EventRsvp.user_id == user.id).values(status=status)
    )
    db.session.commit()
    return {"event_id": event_id, "status": status}


def add_file(user: Actor, group_id: int, upload_id: str, name: str) -> dict:
    group = get_or_404(Group, group_id, "group")
    if _active(group, user.id) is None:
        raise Forbidden("Members only.")
    upload = db.session.get(Upload, upload_id)
    if upload is None or upload.owner_id != user.id:
        raise ValidationError(fields={"upload_id": ["Not one of your uploads."]})
    item = GroupFile(group_id=group_id, upload_id=upload_id, name=name, uploaded_by=user.id)
    db.session.add(item)
    db.session.commit()
    return file_json(item, upload)


def files(viewer: Actor, group_id: int) -> list[dict]:
    _readable(viewer, group_id)
    rows = db.session.execute(
        select(GroupFile, Upload)
        .join(Upload, Upload.id == GroupFile.upload_id)
        .where(GroupFile.group_id == group_id)
        .order_by(GroupFile.id.desc())
        .limit(200)
    ).all()
    return [file_json(f, u) for f, u in rows]


def event_json(event: GroupEvent) -> dict:
    return {
        "id": event.id,
        "group_id": event.group_id,
        "title": event.title,
        "location": event.location,
        "starts_at": isoformat(event.starts_at),
        "created_by": event.created_by,
    }


def file_json(item: GroupFile, upload: Upload) -> dict:
    return {
        "id": item.id,
        "name": item.name,
        "url": f"/api/uploads/{upload.id}",
        "content_type": upload.content_type,
        "size": upload.size,
        "uploaded_by": item.uploaded_by,
        "created_at": isoformat(item.created_at),
    }
