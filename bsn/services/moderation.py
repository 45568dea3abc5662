"""Moderation: reports, auto-moderation of new text, moderator actions, and the audit log they all land in."""

from __future__ import annotations

import re

from flask import current_app
from sqlalchemy import delete, select, update

from bsn.actors import Actor
from bsn.clock import isoformat
from bsn.clock import now as clock_now
from bsn.errors import Conflict, Forbidden, NotFound, ValidationError
from bsn.extensions import db
from bsn.models import Comment, Message, ModerationAction, Post, Report, Story, User
from bsn.services import accounts

TARGETS = {"post": Post, "comment": Comment, "message": Message, "story": Story, "user": User}
ACTIONS = ("hide_content", "suspend_user", "unsuspend_user", "dismiss_report")
LINK = re.compile(r"https?://", re.IGNORECASE)

HOLD = "hold"


def screen(text: str, field: str = "body") -> str | None:
    """Auto-moderation of new text. Raises a 422 naming the rule, or returns "hold" when the text is
    to be published hidden and queued for review (MODERATION_MODE=hold)."""
    config = current_app.config
    lowered = text.lower()
    problem = None
    for word in config["MODERATION_BLOCKED_WORDS"]:
        if re.search(rf"(?<!\w){re.escape(word.lower())}(?!\w)", lowered):
            problem = ("content_blocked", "This text contains a blocked word.")
            break
    if problem is None and len(LINK.findall(text)) > config["MODERATION_MAX_LINKS"]:
        problem = ("link_spam", f"At most {config['MODERATION_MAX_LINKS']} links.")
    if problem is None:
        return None
    if config["MODERATION_MODE"] == HOLD:
        return HOLD
    raise ValidationError(problem[1], fields={field: [problem[1]]}, code=problem[0])


def hold_for_review(target_type: str, target_id: int, reason: str) -> None:
    """An automatic report (no reporter), in the caller's transaction."""
    db.session.add(Report(reporter_id=None, target_type=target_type, target_id=target_id, reason=reason))


def report(reporter: Actor, target_type: str, target_id: int, reason: str) -> Report:
    _check_visible(reporter, target_type, target_id)
    item = Report(reporter_id=reporter.id, target_type=target_type, target_id=target_id, reason=reason)
    db.session.add(item)
    db.session.commit()
    return item


def _check_visible(viewer: Actor, target_type: str, target_id: int) -> None:
    """404 unless the reporter can see the target: a report must not tell whether a hidden id exists."""
    # Imported here: these services import this one (to screen what they store).
    from bsn.services import messaging, posts, users

    target = db.session.get(TARGETS[target_type], target_id)
    if target is None:
        raise NotFound(f"No such {target_type}.")
    if target_type == "post":
        posts.get_post(viewer, target_id)
    elif target_type == "comment":
        posts.get_post(viewer, target.post_id)
    elif target_type == "message":
        messaging.membership(viewer, target.conversation_id)
    elif target_type == "story":
        if target.expires_at <= clock_now() or users.blocked_between(viewer.id, target.author_id):
            raise NotFound("No such story.")
    elif target_type == "user":
        users.profile(viewer, target_id)


def _moderator(actor: Actor) -> User:
    user = db.session.get(User, actor.id)
    if user is None or not user.is_moderator:
        raise Forbidden("Moderators and admins only.")
    return user


def open_reports(actor: Actor, limit: int, after_id: int | None):
    _moderator(actor)
    stmt = select(Report).where(Report.status == "open").order_by(Report.id)
    if after_id is not None:
        stmt = stmt.where(Report.id > after_id)
    rows = db.session.scalars(stmt.limit(limit + 1)).all()
    return [report_json(r) for r in rows[:limit]], (rows[limit - 1].id if len(rows) > limit else None)


def act(actor: Actor, action: str, target_type: str, target_id: int, reason: str, report_id: int | None = None) -> dict:
    """Carry out a moderator action and record it in the audit log, in one transaction."""
    moderator = _moderator(actor)
    target = db.session.get(TARGETS[target_type], target_id)
    if target is None:
        raise NotFound(f"No such {target_type}.")
    at = clock_now()
    if action == "hide_content":
        _hide(target_type, target_id, at)
    elif action in ("suspend_user", "unsuspend_user"):
        if target_type != "user":
            raise ValidationError(fields={"target_type": ["Suspensions apply to users."]})
        if target.is_admin and action == "suspend_user":
            raise Forbidden("Admins cannot be suspended here.")
        target.suspended_at = at if action == "suspend_user" else None
    elif action != "dismiss_report":
        raise ValidationError(fields={"action": [f"One of {', '.join(ACTIONS)}."]})
    if report_id is not None:
        resolved = db.session.execute(
            update(Report)
            .where(Report.id == report_id, Report.status == "open")
            .values(
                status="dismissed" if action == "dismiss_report" else "actioned",
                resolved_by=moderator.id,
                resolved_at=at,
            )
        ).rowcount
        if not resolved:
            db.session.rollback()
            raise Conflict("That report is not open.", code="report_closed")
    entry = ModerationAction(
        moderator_id=moderator.id,
        action=action,
        target_type=target_type,
        target_id=target_id,
        report_id=report_id,
        reason=reason,
        created_at=at,
    )
    db.session.add(entry)
    db.session.commit()
    if action == "suspend_user":
        accounts.revoke_all_tokens(target)  # a suspended user's old tokens stop working at once
    return audit_json(entry)


def _hide(target_type: str, target_id: int, at) -> None:
    if target_type == "post":
        db.session.execute(update(Post).where(Post.id == target_id).values(hidden_at=at))
    elif target_type == "comment":
        comment = db.session.get(Comment, target_id)
        db.session.execute(
            update(Post)
            .where(Post.id == comment.post_id, Post.comment_count > 0)
            .values(comment_count=Post.comment_count - 1)
        )
        db.session.delete(comment)
    elif target_type == "message":
        # A tombstone, as when its sender deletes it: the conversation's seq stays gap-free.
        db.session.execute(
            update(Message).where(Message.id == target_id).values(body="", attachments=[], deleted_at=at)
        )
    elif target_type == "story":
        db.session.execute(delete(Story).where(Story.id == target_id))
    else:
        raise ValidationError(fields={"target_type": ["A user is suspended, not hidden."]})


def audit_log(actor: Actor, limit: int, before_id: int | None):
    _moderator(actor)
    stmt = select(ModerationAction).order_by(ModerationAction.id.desc())
    if before_id is not None:
        stmt = stmt.where(ModerationAction.id < before_id)
    rows = db.session.scalars(stmt.limit(limit + 1)).all()
    return [audit_json(a) for a in rows[:limit]], (rows[limit - 1].id if len(rows) > limit else None)


def report_json(item: Report) -> dict:
    return {
        "id": item.id,
        "reporter_id": item.reporter_id,
        "target_type": item.target_type,
        "target_id": item.target_id,
        "reason": item.reason,
        "status": item.status,
        "created_at": isoformat(item.created_at),
    }


def audit_json(entry: ModerationAction) -> dict:
    return {
        "id": entry.id,
        "moderator_id": entry.moderator_id,
        "action": entry.action,
        "target_type": entry.target_type,
        "target_id": entry.target_id,
        "report_id": entry.report_id,
        "reason": entry.reason,
        "created_at": isoformat(entry.created_at),
    }
