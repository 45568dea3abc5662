"""HTTP plumbing shared by every blueprint: request ids, the error envelope, security headers, access log."""

from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Flask, g, jsonify, request
from flask_limiter.errors import RateLimitExceeded
from flask_smorest import Api as SmorestApi
from werkzeug.exceptions import HTTPException

from bsn.auth import resolved_user_id
from bsn.errors import BSNError, envelope
from bsn.extensions import limiter

log = logging.getLogger("bsn.http")
access_log = logging.getLogger("bsn.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
_SNAKE = re.compile(r"[^a-z0-9]+")


def _error_response(status: int, code: str, message: str, fields: dict | None = None, headers=None):
    response = jsonify(envelope(code, message, fields, getattr(g, "request_id", None)))
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def _limit_headers() -> dict:
    """X-RateLimit-* and Retry-After of the limit just hit.

    Only 429 answers carry them: reading a window's state costs a Redis round trip, which every
    successful call would otherwise pay.
    """
    current = limiter.current_limit
    if current is None:
        return {"Retry-After": "1"}
    reset_at = int(current.reset_at)
    return {
        "X-RateLimit-Limit": str(current.limit.amount),
        "X-RateLimit-Remaining": str(current.remaining),
        "X-RateLimit-Reset": str(reset_at),
        "Retry-After": str(max(1, reset_at - int(time.time()))),
    }


def _webargs_fields(data: dict) -> dict:
    """webargs reports {"json": {"field": [...]}}; clients want {"field": [...]}."""
    fields: dict = {}
    for location, problems in (data.get("messages") or {}).items():
        if isinstance(problems, dict):
            for name, msgs in problems.items():
                fields[str(name)] = msgs if isinstance(msgs, list) else [msgs]
        else:
            fields[location] = problems if isinstance(problems, list) else [problems]
    return fields


class Api(SmorestApi):
    """flask-smorest's Api with BSN's error envelope for every HTTP error."""

    def handle_http_exception(self, error: HTTPException):
        if isinstance(error, RateLimitExceeded):
            message = f"Too many requests: the limit is {error.description}."
            return _error_response(429, "rate_limited", message, headers=_limit_headers())
        data = getattr(error, "data", None) or {}
        code = error.code or 500
        if code == 422 and data.get("messages"):
            fields = _webargs_fields(data)
            return _error_response(422, "validation_error", "Some fields are invalid.", fields)
        if code == 400 and data.get("messages"):
            return _error_response(400, "invalid_json", "The body is not valid JSON.")
        if code == 500:
            # Flask has already logged the exception with its traceback (and request id).
            return _error_response(500, "internal_error", "Something went wrong on our side.")
        name = _SNAKE.sub("_", (error.name or "error").lower()).strip("_")
        message = error.description or error.name
        if code == 413:
            message = f"The body is larger than {request.max_content_length} bytes."
        allow = {"Allow": error.valid_methods and ", ".join(error.valid_methods)} if code == 405 else None
        return _error_response(code, name, message, headers=allow)


def _handle_bsn_error(error: BSNError):
    headers = {}
    if getattr(error, "retry_after", None):
        headers["Retry-After"] = str(error.retry_after)
    return _error_response(error.status, error.code, error.message, error.fields, headers)


def init_app(app: Flask) -> None:
    app.register_error_handler(BSNError, _handle_bsn_error)

    @app.before_request
    def _start():
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        g.started = time.perf_counter()

    @app.after_request
    def _finish(response):
        response.headers["X-Request-ID"] = g.get("request_id", "")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        if response.mimetype == "application/json":
            # API answers are data, never documents: nothing in them may run.
            response.headers.setdefault("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
        if app.config["HSTS_ENABLED"]:
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        if request.path != "/health":
            access_log.info(
                "%s %s %s %.1fms",
                request.method,
                request.path,
                response.status_code,
                (time.perf_counter() - g.get("started", time.perf_counter())) * 1000,
                extra={"status": response.status_code, "user_id": resolved_user_id()},
            )
        return response
