"""Operations: /health (the process answers) and /ready (its dependencies are alive)."""

import logging

from flask import jsonify
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from bsn import liveness
from bsn.errors import envelope
from bsn.extensions import limiter, request_id
from bsn.schemas.common import ErrorSchema

blp = Blueprint("ops", __name__, description="Health and readiness for load balancers and operators")
log = logging.getLogger(__name__)


class HealthSchema(Schema):
    status = fields.String()


class ReadySchema(HealthSchema):
    checks = fields.Dict(metadata={"description": "database, redis, worker, scheduler, periodic_jobs: each with ok"})


class NotReadySchema(ErrorSchema):
    checks = fields.Dict()


@blp.route("/health", methods=["GET"])
@limiter.exempt
@blp.response(200, HealthSchema)
def health():
    """Cheap: answers 200 whenever the process serves requests."""
    return jsonify(status="ok")


@blp.route("/ready", methods=["GET"])
@limiter.exempt
@blp.response(200, ReadySchema)
@blp.alt_response(503, schema=NotReadySchema, description="Not ready: the failed checks are named")
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
