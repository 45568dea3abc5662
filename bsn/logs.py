"""Logging: one JSON object a line in production, readable text in development, each with its request or job id."""

from __future__ import annotations

import json
import logging
import sys
import time

from flask import g, has_app_context, has_request_context

_CONFIGURED = False


def _context_id() -> str | None:
    if has_request_context():
        return getattr(g, "request_id", None)
    if has_app_context() and "request_id" in g:
        return g.request_id  # a fast lane's request, served in an app context only (bsn/fastlane.py)
    try:
        from rq import get_current_job

        job = get_current_job()
    except Exception:  # noqa: BLE001 - logging must never fail
        return None
    return f"job:{job.id}" if job is not None else None


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = _context_id()
        return True


def _install_record_factory() -> None:
    """Stamp every record with its request or job id when it is made, so every handler sees it."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "_bsn", False):
        return

    def factory(*args, **kwargs):
        record = previous(*args, **kwargs)
        record.request_id = _context_id()
        return record

    factory._bsn = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


class JSONFormatter(logging.Formatter):
    RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "request_id"}

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.request_id:
            entry["request_id"] = record.request_id
        # Structured extras (`log.info("...", extra={...})`) become fields of their own.
        for key, value in vars(record).items():
            if key not in self.RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")


def configure(fmt: str, level: str) -> None:
    """Install the handler once per process; later apps in the same process (tests) reuse it."""
    global _CONFIGURED
    _install_record_factory()
    root = logging.getLogger()
    root.setLevel(level.upper())
    if _CONFIGURED:
        for handler in root.handlers:
            if getattr(handler, "_bsn", False):
                handler.setFormatter(JSONFormatter() if fmt == "json" else TextFormatter())
        return
    handler = logging.StreamHandler(sys.stderr)
    handler._bsn = True  # type: ignore[attr-defined]
    handler.addFilter(ContextFilter())
    handler.setFormatter(JSONFormatter() if fmt == "json" else TextFormatter())
    root.addHandler(handler)
    _CONFIGURED = True
