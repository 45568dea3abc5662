"""REST: mining sessions, claims, history, achievements, leaderboard."""

from flask import jsonify, request
from flask_smorest import Blueprint

from bsn.auth import bearer_token, current_caller, current_user, login_required
from bsn.clock import isoformat
from bsn.dbtools import cursor_id, encode_cursor
from bsn.extensions import limiter
from bsn.fastlane import EARLY, FastLane, teach
from bsn.schemas.common import PageArgsSchema, page
from bsn.schemas.mining import (
    AchievementsSchema,
    ClaimSchema,
    HeartbeatSchema,
    LeaderboardArgsSchema,
    LeaderboardSchema,
    MiningActivityPageSchema,
    MiningStatsSchema,
)
from bsn.services import mining

blp = Blueprint("mining", __name__, url_prefix="/api/mining", description="Token mining")
SECURITY = [{"bearer": []}]


@blp.route("/start/", methods=["POST"])
@blp.doc(security=SECURITY)
@login_required
@blp.response(200, MiningStatsSchema)
def start():
    """Start mining; while a session is live this changes nothing."""
    return mining.start(current_caller())


@blp.route("/heartbeat/", methods=["PATCH"])
@blp.doc(security=SECURITY)
@limiter.exempt  # limited per user by HEARTBEAT_RATE_LIMIT inside its single Redis round trip
@blp.response(200, HeartbeatSchema)
def heartbeat():
    """Keep the session alive (clients send one every 30 s while visible). A lapsed session stays stopped."""
    token = bearer_token()
    early = request.environ.pop(EARLY, None)
    if early and early[0] == token:
        # FastHeartbeat already ran the call and left the answer (or its error) to Flask.
        if isinstance(early[1], Exception):
            raise early[1]
        answer = early[1]
    else:
        answer = mining.heartbeat_with_token(token) if token else None
    if answer is None:
        answer = mining.heartbeat(current_caller())
    if not answer.get("renewed"):
        return answer  # a lapsed session: the full stats, through HeartbeatSchema
    # The renewal, the most frequent answer of all, skips the schema machinery (same fields).
    teach(request.environ)
    return jsonify(
        is_mining=True,
        renewed=True,
        last_heartbeat=isoformat(answer["last_heartbeat"]),
        expires_at=isoformat(answer["expires_at"]),
        stopped_reason=None,
    )


@blp.route("/activity-check/", methods=["PATCH"])
@blp.doc(security=SECURITY)
@login_required
@blp.response(200, MiningStatsSchema)
def activity_check():
    """Record user activity; answers whether mining goes on."""
    return mining.activity_check(current_caller())


@blp.route("/stop/", methods=["POST"])
@blp.doc(security=SECURITY)
@login_required
@blp.response(200, MiningStatsSchema)
def stop():
    """Stop mining now (idempotent)."""
    return mining.stop(current_caller())


@blp.route("/stats/", methods=["GET"])
@blp.doc(security=SECURITY)
@login_required
@blp.response(200, MiningStatsSchema)
def stats():
    """The caller's mining state, with the accrual rule applied at this instant."""
    return mining.stats(current_caller())


@blp.route("/claim/", methods=["POST"])
@blp.doc(security=SECURITY)
@login_required
@blp.response(200, ClaimSchema)
def claim():
    """Move the pending amount into the balance (409 nothing_to_claim when there is none)."""
    return mining.claim(current_caller())


@blp.route("/activities/", methods=["GET"])
@blp.doc(security=SECURITY)
@login_required
@blp.arguments(PageArgsSchema, location="query")
@blp.response(200, MiningActivityPageSchema)
def activities(args):
    """The caller's mining sessions, newest first."""
    before = cursor_id(args)
    items, more = mining.activities(current_caller(), args["limit"], before)
    return page(items, encode_cursor(items[-1]["id"]) if more else None)


@blp.route("/achievements/", methods=["GET"])
@blp.doc(security=SECURITY)
@login_required
@blp.response(200, AchievementsSchema)
def achievements():
    """Achievements earned and still to earn, with the mining-power bonus each gives."""
    return mining.achievements(current_caller())


@blp.route("/optimization/", methods=["GET"])
@blp.doc(
    security=SECURITY,
    responses={
        "200": {
            "description": "The report: version, mode, generated_at, window, best_algorithm, objective (admins: all)",
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
        "404": "NOT_FOUND",
    },
)
@login_required
def optimization():
    """The mining optimizer's last report (admins see all of it; 404 no_report when there is none)."""
    return mining.optimization_report(current_user())


@blp.route("/leaderboard/", methods=["GET"])
@blp.doc(security=SECURITY)
@login_required
@blp.arguments(LeaderboardArgsSchema, location="query")
@blp.response(200, LeaderboardSchema)
def leaderboard(args):
    """Top miners by tokens mined, all time or this ISO week, and the caller's own rank."""
    return mining.leaderboard(current_caller(), args["period"], args["limit"])


# -- the renewal without the framework ------------------------------------------------------------------------------


class FastHeartbeat(FastLane):
    """Answers a heartbeat that renews a live session before Flask (bsn/fastlane.py).

    Its work is one pipelined Redis script. A cold token cache, a lapsed session, 429 or an error go to
    Flask with the call's outcome (EARLY), so the renewal never runs twice.
    """

    method, paths, status = "PATCH", frozenset(("/api/mining/heartbeat/", "/api/mining/heartbeat")), "200 OK"

    def answer(self, environ, token, learnt):
        try:
            answer = mining.heartbeat_with_token(token)
        except Exception as exc:  # noqa: BLE001 - Flask answers it, as it would any error of the view
            answer = exc
        if not isinstance(answer, dict) or not answer.get("renewed"):
            environ[EARLY] = (token, answer)
            return None
        body = (
            f'{{"is_mining":true,"renewed":true,"last_heartbeat":"{isoformat(answer["last_heartbeat"])}",'
            f'"expires_at":"{isoformat(answer["expires_at"])}","stopped_reason":null}}\n'
        ).encode()
        return body, None


@blp.record_once
def _install_fast_heartbeat(state) -> None:
    state.app.wsgi_app = FastHeartbeat(state.app, state.app.wsgi_app)
