"""Schemas of mining answers."""

from marshmallow import Schema, fields, validate

from bsn.schemas.accounts import UserSchema
from bsn.schemas.common import Amount, Timestamp


class MiningStatsSchema(Schema):
    is_mining = fields.Boolean()
    mining_power = Amount(metadata={"description": "tokens per hour"})
    pending = Amount(metadata={"description": "accrued, not yet claimed"})
    balance = Amount()
    total_mined = Amount()
    started_at = Timestamp(allow_none=True)
    last_heartbeat = Timestamp(allow_none=True)
    last_activity_at = Timestamp(allow_none=True)
    last_inactive_check = Timestamp(allow_none=True)
    expires_at = Timestamp(allow_none=True, metadata={"description": "end of the session unless renewed"})
    ended_at = Timestamp(allow_none=True)
    stopped_reason = fields.String(
        allow_none=True, metadata={"enum": ["stopped", "heartbeat_timeout", "inactive", "max_session"]}
    )
    streak_days = fields.Integer()


class HeartbeatSchema(MiningStatsSchema):
    """A renewed session answers only what changed; a lapsed one answers the full stats."""

    renewed = fields.Boolean(metadata={"description": "true when this heartbeat extended the session"})


class ClaimSchema(Schema):
    claimed = Amount()
    balance = Amount()
    entry_id = fields.Integer()


class MiningActivitySchema(Schema):
    id = fields.Integer()
    started_at = Timestamp()
    ended_at = Timestamp(allow_none=True)
    end_reason = fields.String(allow_none=True)
    mining_power = Amount()
    mined = Amount()


class MiningActivityPageSchema(Schema):
    results = fields.List(fields.Nested(MiningActivitySchema))
    next_cursor = fields.String(allow_none=True)


class NextAchievementSchema(Schema):
    code = fields.String()
    title = fields.String()
    bonus_pct = fields.Integer(metadata={"description": "percent added to mining power while held"})


class AchievementSchema(NextAchievementSchema):
    earned_at = Timestamp()


class AchievementsSchema(Schema):
    earned = fields.List(fields.Nested(AchievementSchema))
    next = fields.List(fields.Nested(NextAchievementSchema))


class LeaderboardArgsSchema(Schema):
    period = fields.String(load_default="all", validate=validate.OneOf(["all", "week"]))
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))


class LeaderboardRowSchema(Schema):
    rank = fields.Integer()
    user = fields.Nested(UserSchema)
    mined = Amount()


class LeaderboardMeSchema(Schema):
    rank = fields.Integer(allow_none=True)
    mined = Amount()


class LeaderboardSchema(Schema):
    period = fields.String()
    results = fields.List(fields.Nested(LeaderboardRowSchema))
    me = fields.Nested(LeaderboardMeSchema)
