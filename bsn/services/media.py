"""Uploads (type checked on content, size limited) and stories (gone 24 h after creation)."""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import timedelta

from flask import current_app
from sqlalchemy import delete, select, update

from bsn.actors import Actor
from bsn.clock import isoformat
from bsn.clock import now as clock_now
from bsn.dbtools import insert_ignore
from bsn.errors import Forbidden, NotFound, ValidationError
from bsn.extensions import db
from bsn.models import Follow, GroupFile, Mute, Story, StoryView, Upload, User
from bsn.services.accounts import user_json
from bsn.services.users import blocked_between
from bsn.storage import storage

log = logging.getLogger(__name__)

# What a file is, judged by its first bytes, never by its name or the client's Content-Type.
SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def sniff(data: bytes) -> str | None:
    for magic, content_type in SIGNATURES:
        if data.startswith(magic):
            return content_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:8] == b"ftyp":
        return "video/mp4"
    return None


def save_upload(owner: Actor, data: bytes) -> Upload:
    if not data:
        raise ValidationError(fields={"file": ["The file is empty."]})
    if len(data) > current_app.config["UPLOAD_MAX_BYTES"]:
        raise ValidationError(fields={"file": [f"At most {current_app.config['UPLOAD_MAX_BYTES']} bytes."]})
    content_type = sniff(data)
    if content_type is None:
        raise ValidationError(fields={"file": ["Only PNG, JPEG, GIF, WebP images and MP4 videos."]})
    upload = Upload(
        id=secrets.token_hex(16),
        owner_id=owner.id,
        content_type=content_type,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    storage().save(upload.id, data)  # the file first: a row never points at nothing
    db.session.add(upload)
    db.session.commit()
    return upload


def read_upload(upload_id: str) -> tuple[Upload, bytes]:
    upload = db.session.get(Upload, upload_id)
    if upload is None or not storage().exists(upload_id):
        raise NotFound("No such file.")
    return upload, storage().read(upload_id)


def upload_json(upload: Upload) -> dict:
    return {
        "id": upload.id,
        "content_type": upload.content_type,
        "size": upload.size,
        "url": f"/api/uploads/{upload.id}",
        "created_at": isoformat(upload.created_at),
    }


# ---- stories ----


def _resolve_media(owner: Actor, media: str) -> tuple[str, str | None]:
    """An https URL stays as it is; anything else must be one of the owner's uploads."""
    if media.startswith("https://"):
        return media, None
    upload = db.session.get(Upload, media)
    if upload is None or upload.owner_id != owner.id:
        raise ValidationError(fields={"media": ["Not one of your uploads, nor an https URL."]})
    return f"/api/uploads/{upload.id}", upload.id


def create_story(author: Actor, media: str, caption: str = "") -> dict:
    url, upload_id = _resolve_media(author, media)
    at = clock_now()
    story = Story(
        author_id=author.id,
        media=url,
        upload_id=upload_id,
        caption=caption,
        created_at=at,
        expires_at=at + timedelta(seconds=current_app.config["STORY_TTL"]),
    )
    db.session.add(story)
    db.session.flush()
    # Built before the commit: reading the story after it would open a transaction (and, on SQLite under
    # gevent, hold the process's writer turn) across the fan-out's Redis call.
    data = story_json(story, db.session.get(User, author.id))
    db.session.commit()
    from bsn.services.posts import fan_out_later

    fan_out_later("story_created", {"story_id": data["id"], "author_id": author.id}, author.id)
    return data


def _live_story(viewer: Actor, story_id: int) -> Story:
    story = db.session.get(Story, story_id)
    # An expired story is gone at once for everyone, whether or not the purge has run.
    if story is None or story.expires_at <= clock_now() or blocked_between(viewer.id, story.author_id):
        raise NotFound("No such story.")
    return story


def stories_of_followed(viewer: Actor) -> list[dict]:
    """Live stories of the people the viewer follows (and their own), grouped by author, newest author first."""
    authors = select(Follow.followee_id).where(Follow.follower_id == viewer.id)
    muted = select(Mute.muted_id).where(Mute.muter_id == viewer.id)
    rows = db.session.execute(
        select(Story, User)
        .join(User, User.id == Story.author_id)
        .where(
            (Story.author_id.in_(authors)) | (Story.author_id == viewer.id),
            Story.author_id.not_in(muted),
            Story.expires_at > clock_now(),
        )
        .order_by(Story.author_id, Story.created_at)
        .limit(1000)
    ).all()
    groups: dict[int, dict] = {}
    for story, author in rows:
        group = groups.setdefault(author.id, {"author": user_json(author), "stories": []})
        group["stories"].append(story_json(story, author))
    return sorted(groups.values(), key=lambda g: g["stories"][-1]["created_at"], reverse=True)


def view_story(viewer: Actor, story_id: int) -> dict:
    """Counted once per viewer."""
    story = _live_story(viewer, story_id)
    if story.author_id != viewer.id:
        added = insert_ignore(
            StoryView,
            [{"story_id": story_id, "viewer_id": viewer.id, "viewed_at": clock_now()}],
            ["story_id", "viewer_id"],
        )
        if added:
            db.session.execute(update(Story).where(Story.id == story_id).values(view_count=Story.view_count + 1))
        db.session.commit()
    return story_json(db.session.get(Story, story_id), db.session.get(User, story.author_id))


def react_to_story(viewer: Actor, story_id: int, emoji: str) -> dict:
    """One reaction per viewer, changeable; reacting counts as viewing."""
    story = _live_story(viewer, story_id)
    if story.author_id == viewer.id:
        raise ValidationError("You cannot react to your own story.", fields={"story_id": ["Your own story."]})
    view_story(viewer, story_id)
    db.session.execute(
        update(StoryView).where(StoryView.story_id == story_id, StoryView.viewer_id == viewer.id).values(reaction=emoji)
    )
    db.session.commit()
    return {"story_id": story_id, "reaction": emoji}


def viewers(owner: Actor, story_id: int) -> list[dict]:
    story = _live_story(owner, story_id)
    if story.author_id != owner.id:
        raise Forbidden("Only the story's author sees who viewed it.")
    rows = db.session.execute(
        select(StoryView, User)
        .join(User, User.id == StoryView.viewer_id)
        .where(StoryView.story_id == story_id)
        .order_by(StoryView.viewed_at)
    ).all()
    return [{"user": user_json(u), "viewed_at": isoformat(v.viewed_at), "reaction": v.reaction} for v, u in rows]


def purge_stories(batch: int = 1000) -> int:
    """Delete expired stories and the uploaded files only they used. Returns how many stories went."""
    removed = 0
    while True:
        rows = db.session.execute(
            select(Story.id, Story.upload_id).where(Story.expires_at <= clock_now()).limit(batch)
        ).all()
        if not rows:
            return removed
        ids = [r.id for r in rows]
        uploads = {r.upload_id for r in rows if r.upload_id}
        db.session.execute(delete(Story).where(Story.id.in_(ids)))
        # A file still shown by another story, or shared in a group, stays.
        still_used = (
            set(db.session.scalars(select(Story.upload_id).where(Story.upload_id.in_(uploads))))
            | set(db.session.scalars(select(GroupFile.upload_id).where(GroupFile.upload_id.in_(uploads))))
            if uploads
            else set()
        )
        orphans = sorted(uploads - still_used)
        if orphans:
            db.session.execute(delete(Upload).where(Upload.id.in_(orphans)))
        db.session.commit()
        # Files after the commit: a failed commit must not leave rows pointing at deleted files.
        for upload_id in orphans:
            storage().delete(upload_id)
        removed += len(ids)
        log.info("purged %d expired stories and %d files", len(ids), len(orphans))


def story_json(story: Story, author: User) -> dict:
    return {
        "id": story.id,
        "author": user_json(author),
        "media": story.media,
        "caption": story.caption,
        "created_at": isoformat(story.created_at),
        "expires_at": isoformat(story.expires_at),
        "view_count": story.view_count,
    }
