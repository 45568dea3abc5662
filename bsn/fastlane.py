"""WSGI fast lanes: the busiest calls answered before Flask's request machinery, exactly as Flask answers them.

Why: on the heartbeat and on post creation the work itself is small beside a Flask request (contexts, URL
matching, Flask-Limiter's resolution of which limits apply, webargs, schema wrappers, response hooks). A
lane serves only the ordinary case of its call and gives it the answer the view would give: the same
body, the request id, the access log line, and the headers of the response hooks (security headers),
learnt from the first such answer Flask gave in this process. Anything else (another method or path, no
bearer token, a browser's Origin, which CORS must answer, debug mode, whatever the lane does not know
for sure) goes to Flask, carrying what the lane already did so that nothing runs twice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from flask import Flask, g

from bsn.http import STARTED, log_access, request_id_for

SLOW = "bsn.fastlane.slow"  # in the environ: Flask serves the call (tests compare both ways)
EARLY = "bsn.fastlane.early"  # what the lane did before it handed the call to Flask, for the view to use
# A list the view appends to when its answer is one the lane may learn from (a mutable: Flask-SocketIO
# copies the environ).
LEARN = "bsn.fastlane.learn"
_PER_ANSWER = frozenset(("content-length", "x-request-id"))
# flask-cors answers this request header with a header of its own even without an Origin.
_PRIVATE_NETWORK = "HTTP_ACCESS_CONTROL_REQUEST_PRIVATE_NETWORK"


@dataclass(frozen=True)
class Learnt:
    headers: list  # an ordinary answer's headers in Flask's order; None for the per-answer values (_PER_ANSWER)
    lesson: Any  # what the view taught beside them (FastCreatePost: the rate-limit hits to make)


def teach(environ: dict, lesson: Any = None) -> None:
    """Called by a view whose answer is the ordinary one its lane serves: the lane may learn from it."""
    learning = environ.get(LEARN)
    if learning is not None:
        learning.append(lesson)


def bearer(environ: dict) -> str | None:
    scheme, _, token = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def within_limits(counts: dict | None, hits: tuple, user_id: int) -> bool:
    """Whether the rate-limit hits the token lookup made (`counts`, from PREHITS) all pass, as Flask-Limiter
    judges them (bsn/extensions._PrehitStrategy)."""
    for hit in hits:
        count = (counts or {}).get(hit.prefix + str(user_id) + hit.suffix)
        if count is None or count > hit.amount:
            return False  # not hit (Redis failed the lookup: Flask-Limiter hits it), or breached (Flask's 429)
    return True


class FastLane:
    """WSGI middleware for one call; a subclass names it and answers its ordinary case in `answer`."""

    method: str
    paths: frozenset[str]
    status: str  # of the ordinary answer, e.g. "200 OK"

    def __init__(self, app: Flask, wsgi_app) -> None:
        self.app, self.wsgi_app = app, wsgi_app
        self.learnt: dict[tuple, Learnt] = {}  # by `learning_key()`

    def matches(self, path: str) -> bool:
        return path in self.paths

    def learning_key(self) -> tuple:
        """The settings an ordinary answer's headers (and lesson) depend on: learnt again when they change."""
        return (self.app.config["HSTS_ENABLED"],)

    def answer(self, environ: dict, token: str, learnt: Learnt) -> tuple[bytes, int | None] | None:
        """In an app context: (body, user id for the log) of the ordinary answer, or None for Flask to answer.

        Before returning None, leave in the environ whatever Flask needs to not run anything twice.
        """
        raise NotImplementedError

    def __call__(self, environ, start_response):
        if environ.get("REQUEST_METHOD") != self.method or not self.matches(environ.get("PATH_INFO", "")):
            return self.wsgi_app(environ, start_response)
        token = bearer(environ)
        if (
            token is None
            or "HTTP_ORIGIN" in environ
            or _PRIVATE_NETWORK in environ
            or SLOW in environ
            or self.app.debug
        ):
            # In debug mode jsonify indents its answers, which the lanes' bodies do not.
            return self.wsgi_app(environ, start_response)
        key = self.learning_key()
        learnt = self.learnt.get(key)
        if learnt is None:
            return self.wsgi_app(environ, self._learning(environ, start_response, key))
        started = time.perf_counter()
        request_id = request_id_for(environ.get("HTTP_X_REQUEST_ID", ""))
        with self.app.app_context():
            g.request_id = request_id
            answered = self.answer(environ, token, learnt)
            if answered is not None:
                log_access(self.method, environ["PATH_INFO"], int(self.status[:3]), started, answered[1])
        if answered is None:
            environ["HTTP_X_REQUEST_ID"] = request_id  # Flask's answer and logs carry the same id
            environ[STARTED] = started  # and its log line the whole time taken
            return self.wsgi_app(environ, start_response)
        body = answered[0]
        own = {"content-length": str(len(body)), "x-request-id": request_id}
        start_response(self.status, [(k, own[k.lower()] if v is None else v) for k, v in learnt.headers])
        return [body]

    def _learning(self, environ, start_response, key: tuple):
        lessons = environ[LEARN] = []

        def capture(status, headers, exc_info=None):
            if lessons and status[:4] == self.status[:4]:
                # In Flask's order, with None where each answer has its own value.
                template = [(k, None if k.lower() in _PER_ANSWER else v) for k, v in headers]
                self.learnt[key] = Learnt(template, lessons[0])
            return start_response(status, headers, exc_info)

        return capture
