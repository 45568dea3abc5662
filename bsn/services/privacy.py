"""Privacy: a user's export of their own data, and deleting their account.

What deletion does (the README's "Deleting an account" says the same):
- the account row stays, anonymised (name `deleted_<id>`, no e-mail, no password, no profile), so that
  what other people hold keeps its other side: messages in their conversations, trades, transfers, votes;
- every session ends at once; mining stops; the balance and unclaimed mining are burned through a ledger
  entry (`account_deleted`), so the ledger still adds up; open NFT listings are cancelled;
- removed: posts (with their comments, likes and tags), the user's comments, likes, follows both ways,
  blocks, mutes, stories, uploads and their files, reactions, notifications and preferences, group and
  conversation memberships, RSVPs and pending e-mail tokens;
- kept, shown as from the deleted user: messages sent, DAO proposals and votes, NFTs still owned (they can no
  longer move), reports filed, groups created (left without an owner).
"""

from __future__ import annotations

import logging
from datetime import date, datetime
from decimal import Decimal

import redis
from sqlalchemy import delete, func, or_, select, update

from bsn.clock import isoformat, now
from bsn.errors import ValidationError
from bsn.extensions import db, redis_store
from bsn.models import (
    AccountToken,
    Block,
    Comment,
    ConversationMember,
    EventRsvp,
    Follow,
    Group,
    GroupMember,
    MessageReaction,
    Mute,
    NftListing,
    Notification,
    NotificationPreference,
    Post,
    PostLike,
    Story,
    StoryView,
    Upload,
    User,
)
from bsn.services import accounts, mining, tokens
from bsn.services.nft import ACTIVE, CANCELLED
from bsn.storage import storage

log = logging.getLogger(__name__)

# Every column that points at users.id is either exported (the rows where it names the user) or left out
# for the reason given; tests/test_privacy.py fails when a new one is in neither.
EXPORTED = {
    ("posts", "author_id"),
    ("comments", "author_id"),
    ("likes", "user_id"),
    ("follows", "follower_id"),
    ("follows", "followee_id"),
    ("blocks", "blocker_id"),
    ("mutes", "muter_id"),
    ("messages", "sender_id"),
    ("conversation_members", "user_id"),
    ("conversations", "created_by"),
    ("message_reactions", "user_id"),
    ("wallets", "user_id"),
    ("ledger_entries", "user_id"),
    ("mining_sessions", "user_id"),
    ("mining_states", "user_id"),
    ("achievements", "user_id"),
    ("nft_collections", "creator_id"),
    ("nfts", "owner_id"),
    ("nft_listings", "seller_id"),
    ("nft_listings", "buyer_id"),
    ("nft_transfers", "from_user_id"),
    ("nft_transfers", "to_user_id"),
    ("dao_proposals", "author_id"),
    ("dao_votes", "voter_id"),
    ("groups", "owner_id"),
    ("group_members", "user_id"),
    ("group_events", "created_by"),
    ("event_rsvps", "user_id"),
    ("group_files", "uploaded_by"),
    ("uploads", "owner_id"),
    ("stories", "author_id"),
    ("story_views", "viewer_id"),
    ("notifications", "user_id"),
    ("notification_preferences", "user_id"),
    ("reports", "reporter_id"),
}
NOT_EXPORTED = {
    ("auth_tokens", "user_id"): "token hashes are secrets; logout and password change end sessions",
    ("account_tokens", "user_id"): "e-mailed token seeds are secrets",
    ("blocks", "blocked_id"): "who blocked you is the blocker's data",
    ("mutes", "muted_id"): "who muted you is the muter's data",
    ("ledger_entries", "counterparty_id"): "the other side's entries; yours are exported by user_id",
    ("notifications", "actor_id"): "other people's notifications about you",
    ("reports", "resolved_by"): "moderators' work, not yours",
    ("moderation_actions", "moderator_id"): "moderators' work, not yours",
}
SECRET_COLUMNS = {"password_hash", "token_hash", "nonce"}


def _plain(value):
    if isinstance(value, datetime):
        return isoformat(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _rows(table, where) -> list[dict]:
    result = db.session.execute(select(table).where(where).order_by(*table.primary_key.columns))
    return [{key: _plain(value) for key, value in row._mapping.items() if key not in SECRET_COLUMNS} for row in result]


def export(user: User) -> dict:
    """Everything stored about the user, table by table (amounts in base units of 1e-8 token)."""
    tables = db.metadata.tables
    data: dict[str, list[dict]] = {"account": _rows(tables["users"], tables["users"].c.id == user.id)}
    by_table: dict[str, list[str]] = {}
    for table_name, column in sorted(EXPORTED):
        by_table.setdefault(table_name, []).append(column)
    for table_name, columns in by_table.items():
        table = tables[table_name]
        data[table_name] = _rows(table, or_(*(table.c[column] == user.id for column in columns)))
    return {"exported_at": isoformat(now()), "user_id": user.id, "data": data}


def delete_account(user: User, password: str) -> None:
    """Delete the caller's own account, after checking their password (see the module docstring)."""
    if not accounts.password_matches(user, password):
        raise ValidationError("The password is wrong.", fields={"password": ["Wrong password."]}, code="wrong_password")
    user_id = user.id
    # Sessions end first: if anything below fails, the account is logged out rather than half-deleted and usable.
    accounts.revoke_all_tokens(user)
    mining.stop(user)
    upload_ids = _remove_content(user_id)
    balance = tokens.balance(user_id)
    if balance > 0:
        tokens.post(user_id, -balance, "account_deleted")
    user = db.session.get(User, user_id)
    user.username = f"deleted_{user_id}"
    user.email = f"deleted-{user_id}@deleted.invalid"
    user.password_hash = "!"  # matches no password: argon2 rejects it as a hash
    user.display_name, user.bio, user.avatar_url = "Deleted user", "", None
    user.email_verified_at = None
    user.deleted_at = now()
    db.session.commit()
    # Files after the commit: a failed commit must not leave rows pointing at deleted files.
    for upload_id in upload_ids:
        storage().delete(upload_id)
    accounts.account_changed(user)
    _forget_in_redis(user_id)
    log.info("account %s deleted", user_id)


def _remove_content(user_id: int) -> list[str]:
    """Delete what the user made inside the current transaction; returns the ids of files to remove."""
    # Counters on other people's posts go down with the likes and comments that made them.
    for model, column, counter in (
        (PostLike, PostLike.user_id, "like_count"),
        (Comment, Comment.author_id, "comment_count"),
    ):
        counts = db.session.execute(
            select(model.post_id, func.count()).where(column == user_id).group_by(model.post_id)
        ).all()
        for post_id, count in counts:
            db.session.execute(update(Post).where(Post.id == post_id).values({counter: getattr(Post, counter) - count}))
        db.session.execute(delete(model).where(column == user_id))
    upload_ids = list(db.session.scalars(select(Upload.id).where(Upload.owner_id == user_id)))
    for stmt in (
        delete(Post).where(Post.author_id == user_id),
        delete(Follow).where(or_(Follow.follower_id == user_id, Follow.followee_id == user_id)),
        delete(Block).where(or_(Block.blocker_id == user_id, Block.blocked_id == user_id)),
        delete(Mute).where(or_(Mute.muter_id == user_id, Mute.muted_id == user_id)),
        delete(StoryView).where(StoryView.viewer_id == user_id),
        delete(Story).where(Story.author_id == user_id),
        delete(Upload).where(Upload.owner_id == user_id),
        delete(MessageReaction).where(MessageReaction.user_id == user_id),
        delete(ConversationMember).where(ConversationMember.user_id == user_id),
        delete(EventRsvp).where(EventRsvp.user_id == user_id),
        delete(GroupMember).where(GroupMember.user_id == user_id),
        update(Group).where(Group.owner_id == user_id).values(owner_id=None),
        update(NftListing)
        .where(NftListing.seller_id == user_id, NftListing.status == ACTIVE)
        .values(status=CANCELLED, closed_at=now()),
        delete(Notification).where(Notification.user_id == user_id),
        delete(NotificationPreference).where(NotificationPreference.user_id == user_id),
        delete(AccountToken).where(AccountToken.user_id == user_id),
    ):
        db.session.execute(stmt.execution_options(synchronize_session=False))
    return upload_ids


def _forget_in_redis(user_id: int) -> None:
    try:
        pipe = redis_store.client.pipeline()
        for key in redis_store.client.scan_iter("mining:leaderboard:*"):
            pipe.zrem(key, user_id)
        pipe.execute()
    except redis.RedisError:
        # The leaderboard rebuild leaves deleted accounts out anyway.
        log.warning("Redis copies of deleted account %s not removed", user_id)
