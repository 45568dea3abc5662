"""Operations: /health (the process answers) and /ready (its dependencies are alive)."""

import logging

from flask import jsonify
from flask_smorest import Blueprint

from bsn import liveness
from bsn.errors import envelope
from bsn.extensions import limiter, request_id

blp = Blueprint("ops", __name__, description="Health and readiness for load balancers and operators")
log = logging.getLogger(__name__)


@blp.route("/health", methods=["GET"])
@limiter.exempt
def health():
    """Cheap: answers 200 whenever the process serves requests."""
    return jsonify(status="ok")


@blp.route("/ready", methods=["GET"])
@limiter.exempt
def ready():
    """200 when the database, Redis, a worker and the scheduler are alive; 503 naming what failed."""
    checks = liveness.checks()
    failed = sorted(name for name, check in checks.items() if not check["ok"])
    if not failed:
        return jsonify(status="ok", checks=checks)
    log.error("not ready: %s", ", ".join(failed), extra={"checks": checks})
    body = envelope("not_ready", "Not ready: " + ", ".join(failed) + ".", request_id=request_id())
    body["checks"] = checks
    response = jsonify(body)
    response.status_code = 503
    return response
