"""REST: mining sessions, claims, history, achievements, leaderboard."""

import logging
import time

from flask import g, jsonify, request
from flask_smorest import Blueprint

from bsn.auth import bearer_token, current_caller, current_user, login_required
from bsn.clock import isoformat
from bsn.dbtools import cursor_id, encode_cursor
from bsn.extensions import limiter
from bsn.http import request_id_for
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
access_log = logging.getLogger("bsn.access")


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
    early = request.environ.pop(_EARLY, None)
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
    learning = request.environ.get(_RENEWED)
    if learning is not None:
        learning.append(True)
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

_PATHS = frozenset(("/api/mining/heartbeat/", "/api/mining/heartbeat"))
_EARLY = "bsn.heartbeat.early"  # (token, answer or exception) that FastHeartbeat leaves to the view
_SLOW = "bsn.heartbeat.slow"  # in the environ: Flask serves the call (tests compare both ways)
# A list the view appends to when its answer is a renewal (a mutable: Flask-SocketIO copies the environ).
_RENEWED = "bsn.heartbeat.renewed"
_PER_ANSWER = frozenset(("content-length", "x-request-id"))


class FastHeartbeat:
    """WSGI middleware: answers a heartbeat that renews a live session before Flask's request machinery.

    Why: the heartbeat is the most frequent call of all, and its work (one pipelined Redis script) is
    small beside a Flask request (context, session, URL matching, rate-limit resolution, response
    hooks, schema wrappers). A renewal gets here exactly the answer the view would give: the same body,
    the request id, the access log line, and the headers of the response hooks (security headers,
    CORS), learnt from the first renewal Flask answered in this process. Anything else (another method
    or path, no bearer token, a browser's Origin, which CORS must answer, a cold token cache, a lapsed
    session, 429, an error) goes to Flask, carrying the call's outcome so nothing runs twice.
    """

    def __init__(self, app, wsgi_app) -> None:
        self.app, self.wsgi_app = app, wsgi_app
        self.headers: dict[bool, list] = {}  # by HSTS_ENABLED: the hooks' headers of a renewal

    def __call__(self, environ, start_response):
        if environ.get("REQUEST_METHOD") != "PATCH" or environ.get("PATH_INFO") not in _PATHS:
            return self.wsgi_app(environ, start_response)
        scheme, _, token = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or "HTTP_ORIGIN" in environ or _SLOW in environ or self.app.debug:
            # In debug mode jsonify indents its answers, which the fast body does not.
            return self.wsgi_app(environ, start_response)
        hsts = self.app.config["HSTS_ENABLED"]
        headers = self.headers.get(hsts)
        if headers is None:
            return self.wsgi_app(environ, self._learning(environ, start_response, hsts))
        started = time.perf_counter()
        request_id = request_id_for(environ.get("HTTP_X_REQUEST_ID", ""))
        with self.app.app_context():
            g.request_id = request_id
            try:
                answer = mining.heartbeat_with_token(token)
            except Exception as exc:  # noqa: BLE001 - Flask answers it, as it would any error of the view
                answer = exc
            if not isinstance(answer, dict) or not answer.get("renewed"):
                environ[_EARLY] = (token, answer)
                environ["HTTP_X_REQUEST_ID"] = request_id  # Flask's answer and logs carry the same id
                body = None
            else:
                body = (
                    f'{{"is_mining":true,"renewed":true,"last_heartbeat":"{isoformat(answer["last_heartbeat"])}",'
                    f'"expires_at":"{isoformat(answer["expires_at"])}","stopped_reason":null}}\n'
                ).encode()
                if access_log.isEnabledFor(logging.INFO):
                    _log_renewal(environ["PATH_INFO"], started, request_id)
        if body is None:
            return self.wsgi_app(environ, start_response)
        start_response("200 OK", [*headers, ("Content-Length", str(len(body))), ("X-Request-ID", request_id)])
        return [body]

    def _learning(self, environ, start_response, hsts: bool):
        renewed = environ[_RENEWED] = []

        def capture(status, headers, exc_info=None):
            if renewed and status.startswith("200 "):
                self.headers[hsts] = [(k, v) for k, v in headers if k.lower() not in _PER_ANSWER]
            return start_response(status, headers, exc_info)

        return capture


def _log_renewal(path: str, started: float, request_id: str) -> None:
    # bsn.http's access log line; the record is stamped by hand, as there is no request context to read.
    took = (time.perf_counter() - started) * 1000
    extra = {"status": 200, "user_id": None}
    record = access_log.makeRecord(
        access_log.name, logging.INFO, __file__, 0, "PATCH %s 200 %.1fms", (path, took), None, extra=extra
    )
    record.request_id = request_id
    access_log.handle(record)


@blp.record_once
def _install_fast_heartbeat(state) -> None:
    state.app.wsgi_app = FastHeartbeat(state.app, state.app.wsgi_app)
