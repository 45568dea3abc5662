"""Admin-only operations: the status JSON, and rq-dashboard mounted at /admin/rq."""

from __future__ import annotations

import rq_dashboard
from flask import Flask, Response, request
from flask_smorest import Blueprint

from bsn import liveness
from bsn.auth import current_user, role_required
from bsn.errors import BSNError, Forbidden
from bsn.services import accounts

blp = Blueprint("admin", __name__, url_prefix="/api/admin", description="Operations (admins only)")


@blp.route("/status/", methods=["GET"])
@blp.doc(
    security=[{"bearer": []}],
    responses={"200": {"description": "The status", "content": {"application/json": {"schema": {"type": "object"}}}}},
)
@role_required(lambda user: user.is_admin)
def status():
    """Health checks, the periodic schedule (next run, last success, lateness), queues and workers."""
    return liveness.status()


def _dashboard_user():
    """A browser cannot send a bearer header, so the dashboard also takes the admin's login by HTTP Basic."""
    user = None
    if request.authorization and request.authorization.type == "basic":
        try:
            user = accounts.check_credentials(request.authorization.username, request.authorization.password)
        except BSNError:
            user = None
    elif request.headers.get("Authorization"):
        try:
            user = current_user()
        except BSNError:
            user = None
    return user


def _guard_dashboard():
    # rq-dashboard's blueprint has no auth of its own.
    if request.blueprint != "rq_dashboard":
        return None
    user = _dashboard_user()
    if user is None:
        return Response(
            "Log in as an administrator.", 401, {"WWW-Authenticate": 'Basic realm="BSN admin", charset="UTF-8"'}
        )
    if not user.is_admin:
        raise Forbidden("Administrators only.")
    return None


def init_dashboard(app: Flask) -> None:
    app.config.from_object(rq_dashboard.default_settings)
    app.config["RQ_DASHBOARD_REDIS_URL"] = app.config["REDIS_URL"]
    rq_dashboard.web.setup_rq_connection(app)
    app.before_request(_guard_dashboard)
    app.register_blueprint(rq_dashboard.blueprint, url_prefix="/admin/rq")
