"""The wrapper every periodic job runs in: it records each success, so lateness can be seen and alarmed on."""

from __future__ import annotations

import importlib
import logging
import time

from bsn.extensions import redis_store
from workers.schedule import by_id

log = logging.getLogger(__name__)

RECORD_KEY = "bsn:periodic:{}"
# Long enough to outlive the slowest interval several times over, so a record is never mistaken for "never ran".
RECORD_TTL = 30 * 24 * 3600


def run(periodic_id: str):
    periodic = by_id(periodic_id)
    module_name, _, func_name = periodic.func.rpartition(".")
    func = getattr(importlib.import_module(module_name), func_name)
    started = time.time()
    log.info("periodic job %s started", periodic_id)
    try:
        result = func()
    except Exception as exc:
        record(periodic_id, last_failure=f"{time.time():.3f}", error=f"{type(exc).__name__}: {exc}"[:500])
        log.exception("periodic job %s failed", periodic_id)
        raise
    duration = time.time() - started
    record(periodic_id, last_success=f"{time.time():.3f}", duration=f"{duration:.3f}")
    log.info("periodic job %s finished in %.2f s", periodic_id, duration)
    return result


def record(periodic_id: str, **fields: str) -> None:
    key = RECORD_KEY.format(periodic_id)
    pipe = redis_store.client.pipeline()
    pipe.hset(key, mapping=fields)
    pipe.expire(key, RECORD_TTL)
    pipe.execute()


def read(periodic_id: str) -> dict[str, str]:
    raw = redis_store.client.hgetall(RECORD_KEY.format(periodic_id))
    return {k.decode(): v.decode() for k, v in raw.items()}
