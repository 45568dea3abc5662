"""HTTP plumbing shared by every blueprint: request ids, the error envelope, security headers, access log."""

from __future__ import annotations

import itertools
import logging
import os
import re
import secrets
import time
from http import HTTPStatus

from apispec import BasePlugin
from flask import Flask, g, jsonify, request
from flask.sessions import SessionInterface
from flask_limiter.errors import RateLimitExceeded
from flask_smorest import Api as SmorestApi
from flask_smorest import Blueprint as SmorestBlueprint
from sqlalchemy.exc import DataError
from webargs.flaskparser import FlaskParser
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import IntegerConverter

from bsn.auth import resolved_user_id
from bsn.errors import BSNError, ValidationError, envelope
from bsn.extensions import limiter
from bsn.schemas.common import UNSTORABLE, ErrorSchema, unstorable

log = logging.getLogger("bsn.http")
access_log = logging.getLogger("bsn.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
# A request id names a request in logs and error answers; it is no secret, so a random prefix per
# process and a counter make it unique without a call for random bytes (and a UUID object) per request.
_ID_COUNTER = itertools.count()
_id_prefix = secrets.token_hex(8)


def _new_id_prefix() -> None:
    global _id_prefix
    _id_prefix = secrets.token_hex(8)


os.register_at_fork(after_in_child=_new_id_prefix)  # a process forked after import has a prefix of its own


STARTED = "bsn.http.started"  # in the environ: perf_counter() when a fast lane took the call


def request_id_for(incoming: str) -> str:
    """The client's X-Request-ID if it is a sane one, else a new id (32 hex characters, as a UUID's)."""
    if _REQUEST_ID.match(incoming):
        return incoming
    return f"{_id_prefix}{next(_ID_COUNTER):016x}"


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


class Parser(FlaskParser):
    """webargs' parser with one rule for every body and query: no text that a database cannot store.

    Refused with 422 naming the fields, before the view runs, the same on SQLite (which would keep a
    NUL) and PostgreSQL (which refuses it mid-transaction).
    """

    def pre_load(self, location_data, *, schema, req, location):
        if hasattr(location_data, "items"):
            bad = sorted({str(name) for name, value in location_data.items() if unstorable(value) or unstorable(name)})
            if bad:
                raise ValidationError(fields={name: [UNSTORABLE] for name in bad})
        return location_data


# Every BSN blueprint is a flask-smorest Blueprint, whose `arguments` decorator takes this parser when
# the blueprint module is imported; bsn/__init__ imports this module before any blueprint.
SmorestBlueprint.ARGUMENTS_PARSER = Parser()

# The largest id a column can hold (BIGINT / SQLite INTEGER): a larger one names nothing.
MAX_ID = 2**63 - 1


class IdConverter(IntegerConverter):
    """`<int:...>` in a path: a number too large for a database integer names nothing, 404.

    Werkzeug's converter takes any length of digits, and SQLite refuses a number over 64 bits with an
    OverflowError, which surfaced as a 500. (A ValidationError here would answer 405: werkzeug then
    only sees the other methods' rules for that path.)
    """

    def to_python(self, value: str) -> int:
        number = super().to_python(value)
        if number > MAX_ID:
            raise NotFound()
        return number


def _unstorable_value(error: Exception):
    """A value in a body that no column can hold: a number over 64 bits, NUL in PostgreSQL text, or a
    lone surrogate (valid in JSON's \\u escapes, but not encodable as UTF-8 by either database)."""
    from bsn.extensions import db

    db.session.rollback()
    # The type only: the error's text quotes the value, and values are private (message text, e-mails).
    log.warning("unstorable value (%s)", type(error).__name__)
    return _error_response(422, "validation_error", "A value is out of range or cannot be stored.")


def _id_param_schema(converter):
    return {"type": "integer", "minimum": 0, "maximum": MAX_ID}


class ErrorResponses(BasePlugin):
    """Documents the error answers an operation can give, each with BSN's error envelope.

    They follow from what the operation has, so a new endpoint is documented like the others: a
    bearer token (401 without a valid one; 403 when the caller may not do this or is suspended); no
    token but a body, which then carries the credential (a password, an e-mailed token: 401 and 403
    too); an id in its path or body (404); any input (422 when a value is invalid or breaks a rule);
    a body (400 not JSON, 413 too large); a write (409 when it conflicts with the current state);
    and the rate limit (429) on all. A body whose fields are all optional is documented as optional.
    """

    def init_spec(self, spec):
        self.spec = spec

    def operation_helper(self, path=None, operations=None, **kwargs):
        for method, operation in (operations or {}).items():
            if not isinstance(operation, dict) or method in ("parameters", "summary", "description"):
                continue
            responses = operation.setdefault("responses", {})
            body = operation.get("requestBody")
            secured = bool(operation.get("security"))
            has_path_ids = "{" in (path or "")
            has_query = any(isinstance(p, dict) and p.get("in") == "query" for p in operation.get("parameters", []))
            codes = {429}
            if secured or body:
                codes |= {401, 403}
            if has_path_ids or body:
                codes.add(404)
            if has_path_ids or body or has_query:
                codes.add(422)
            if body:
                codes |= {400, 413}
                if not self._required_fields(body):
                    body["required"] = False
            if method != "get" and (secured or body):
                codes.add(409)
            for code in codes:
                # flask-smorest registers one response component per HTTPStatus, under its name.
                responses.setdefault(code, HTTPStatus(code).name)

    def _required_fields(self, body) -> bool:
        schema = (body.get("content", {}).get("application/json") or {}).get("schema")
        if not isinstance(schema, dict) or "$ref" not in schema:
            return True
        component = self.spec.components.schemas.get(schema["$ref"].rsplit("/", 1)[-1], {})
        return bool(component.get("required")) or component.get("type") != "object"


class Api(SmorestApi):
    """flask-smorest's Api with BSN's error envelope for every HTTP error, documented per operation.

    No catch-all `default` response: an answer whose status the document does not list is a bug
    (the REST fuzz test checks every answer against this document).
    """

    ERROR_SCHEMA = ErrorSchema
    DEFAULT_ERROR_RESPONSE_NAME = None

    def init_app(self, app, *, spec_kwargs=None):
        app.url_map.converters["int"] = IdConverter
        app.register_error_handler(OverflowError, _unstorable_value)
        app.register_error_handler(DataError, _unstorable_value)
        app.register_error_handler(UnicodeEncodeError, _unstorable_value)
        super().init_app(app, spec_kwargs=spec_kwargs)
        self.register_converter(IdConverter, _id_param_schema)

    def _init_spec(self, *, extra_plugins=None, **kwargs):
        super()._init_spec(extra_plugins=[*(extra_plugins or ()), ErrorResponses()], **kwargs)

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


# Where Socket.IO is served (python-socketio's default path).
SOCKETIO_PATH = "/socket.io/"


class BSNFlask(Flask):
    """Flask, without URL matching for Socket.IO events.

    Flask-SocketIO runs every event in a request context built from the socket's handshake request, a
    /socket.io/ path that no route serves: matching it against every rule, again for each event, cost
    about a sixth of the web process's CPU under a chat burst. (So `url_for` cannot run in a socket
    handler; none builds URLs.)
    """

    def create_url_adapter(self, request):
        if request is not None and request.environ.get("PATH_INFO", "").startswith(SOCKETIO_PATH):
            return None
        return super().create_url_adapter(request)


class NoSessions(SessionInterface):
    """No cookie session: every caller is identified by a bearer token (no cookies, so no CSRF), and
    Flask's default interface would still parse the cookie header and check the session on every call."""

    def open_session(self, app, request):
        return self.make_null_session(app)

    def save_session(self, app, session, response):
        return None


def init_app(app: Flask) -> None:
    app.session_interface = NoSessions()
    app.register_error_handler(BSNError, _handle_bsn_error)

    @app.before_request
    def _start():
        g.request_id = request_id_for(request.headers.get("X-Request-ID", ""))
        # A fast lane that handed the call over started its clock already (bsn/fastlane.py).
        g.started = request.environ.get(STARTED) or time.perf_counter()

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
            log_access(request.method, request.path, response.status_code, g.get("started"), resolved_user_id())
        return response


def log_access(method: str, path: str, status: int, started: float | None, user_id: int | None) -> None:
    """The access log line of an answer (Flask's, or a fast lane's: bsn/fastlane.py)."""
    if access_log.isEnabledFor(logging.INFO):
        took = (time.perf_counter() - (started or time.perf_counter())) * 1000
        access_log.info("%s %s %s %.1fms", method, path, status, took, extra={"status": status, "user_id": user_id})
