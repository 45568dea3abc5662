"""One error hierarchy that the REST handler, the socket handler and RQ jobs all understand."""

from __future__ import annotations


class BSNError(Exception):
    """A failure the caller can act on; `status` and `code` travel to REST and socket clients."""

    status = 400
    code = "bad_request"
    message = "The request could not be processed."

    def __init__(self, message: str | None = None, *, fields: dict | None = None, code: str | None = None):
        super().__init__(message or self.message)
        self.message = message or self.message
        self.fields = fields
        if code:
            self.code = code

    def to_dict(self) -> dict:
        body: dict = {"code": self.code, "message": self.message}
        if self.fields:
            body["fields"] = self.fields
        return body


class ValidationError(BSNError):
    status = 422
    code = "validation_error"
    message = "Some fields are invalid."


class Unauthorized(BSNError):
    status = 401
    code = "unauthorized"
    message = "Authentication is required."


class Forbidden(BSNError):
    status = 403
    code = "forbidden"
    message = "You are not allowed to do this."


class NotFound(BSNError):
    status = 404
    code = "not_found"
    message = "Not found."


class Conflict(BSNError):
    status = 409
    code = "conflict"
    message = "This conflicts with the current state."


class InsufficientBalance(Conflict):
    code = "insufficient_balance"
    message = "The balance is too low for this."


class RateLimited(BSNError):
    status = 429
    code = "rate_limited"
    message = "Too many requests; slow down."

    def __init__(self, message: str | None = None, *, retry_after: int | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class ServiceUnavailable(BSNError):
    """Redis or the database is unreachable: retry shortly (REST answers 503 with Retry-After)."""

    status = 503
    code = "service_unavailable"
    message = "A service this call needs is unavailable for the moment; try again shortly."


def envelope(code: str, message: str, fields: dict | None = None, request_id: str | None = None) -> dict:
    """The error body of CONTRACT.md."""
    body: dict = {"code": code, "message": message}
    if fields:
        body["fields"] = fields
    if request_id:
        body["request_id"] = request_id
    return {"error": body}
