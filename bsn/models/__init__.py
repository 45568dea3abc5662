"""All models, imported here so Alembic and the app see one metadata."""

from bsn.models.dao import Proposal, Vote
from bsn.models.groups import EventRsvp, Group, GroupEvent, GroupFile, GroupMember
from bsn.models.media import Story, StoryView, Upload
from bsn.models.messaging import Conversation, ConversationMember, Message, MessageReaction
from bsn.models.mining import Achievement, MiningSession, MiningState
from bsn.models.moderation import ModerationAction, Report
from bsn.models.nft import Nft, NftCollection, NftListing, NftTransfer
from bsn.models.notifications import Notification, NotificationPreference
from bsn.models.outbox import OutboxJob
from bsn.models.social import Block, Comment, Follow, Mute, Post, PostLike
from bsn.models.tags import PostTag
from bsn.models.tokens import LedgerEntry, Wallet
from bsn.models.users import AccountToken, AuthToken, Role, User

__all__ = [
    "AccountToken",
    "Achievement",
    "AuthToken",
    "Block",
    "Comment",
    "Conversation",
    "ConversationMember",
    "EventRsvp",
    "Follow",
    "Group",
    "GroupEvent",
    "GroupFile",
    "GroupMember",
    "LedgerEntry",
    "Message",
    "MessageReaction",
    "MiningSession",
    "MiningState",
    "ModerationAction",
    "Mute",
    "Nft",
    "NftCollection",
    "NftListing",
    "NftTransfer",
    "Notification",
    "NotificationPreference",
    "OutboxJob",
    "Post",
    "PostLike",
    "PostTag",
    "Proposal",
    "Report",
    "Role",
    "Story",
    "StoryView",
    "Upload",
    "User",
    "Vote",
    "Wallet",
]
