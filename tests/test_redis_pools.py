"""Redis connection pools: a burst larger than a pool waits for a free connection instead of failing."""

import threading

import redis

from bsn.extensions import limiter, redis_pool, redis_store


def _burst(client: redis.Redis, callers: int) -> list:
    """`callers` threads at once, each holding a connection for 0.2 s (a blocking pop on an empty list)."""
    failures: list = []

    def call():
        try:
            client.blpop(["bsn-test-nothing"], timeout=0.2)
        except redis.RedisError as exc:
            failures.append(exc)

    threads = [threading.Thread(target=call) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return failures


def test_a_burst_beyond_the_pool_waits_for_a_connection(redis_url):
    client = redis.Redis(connection_pool=redis_pool(redis_url, 2))
    try:
        assert _burst(client, 12) == []
    finally:
        client.close()


def test_redis_pys_own_pool_would_fail_that_burst(redis_url):
    # What the blocking pool replaces: past its size, redis-py's default pool refuses at once.
    client = redis.Redis.from_url(redis_url, max_connections=2)
    try:
        failures = _burst(client, 12)
    finally:
        client.close()
    assert failures and all("Too many connections" in str(exc) for exc in failures)


def test_every_redis_client_of_the_app_waits_on_a_pool_of_the_configured_size(app):
    from bsn.socketqueue import RecoveringRedisManager
    from bsn.sockets.base import BSNNamespace

    size = app.config["REDIS_MAX_CONNECTIONS"]
    with app.test_request_context():
        namespace = BSNNamespace("/pool-test")
        namespace._rate_limit(1, "ping")
        manager = RecoveringRedisManager(app.config["REDIS_URL"], size)
        manager._redis_connect()
        first = manager.redis.connection_pool
        manager._redis_connect()  # as python-socketio does after a failed publish: the same pool again
        assert manager.redis.connection_pool is first
        pools = {
            "shared client": redis_store.client.connection_pool,
            "REST rate limits": limiter.storage.storage.connection_pool,
            "socket rate limits": namespace._limiter.storage.storage.connection_pool,
            "Socket.IO queue": manager.redis.connection_pool,
        }
        manager.redis.close()
    for name, pool in pools.items():
        assert isinstance(pool, redis.BlockingConnectionPool), name
        assert pool.max_connections == size, name


def test_the_pool_size_is_a_setting(monkeypatch):
    from bsn.config import load_settings

    monkeypatch.delenv("REDIS_MAX_CONNECTIONS", raising=False)
    assert load_settings("/tmp")["REDIS_MAX_CONNECTIONS"] == 100
    monkeypatch.setenv("REDIS_MAX_CONNECTIONS", "7")
    assert load_settings("/tmp")["REDIS_MAX_CONNECTIONS"] == 7


def test_a_batched_call_without_a_reply_in_time_fails_as_a_redis_error():
    """On gevent (in a patched subprocess): not gevent's Timeout, which no handler of a Redis failure catches."""
    import subprocess
    import sys

    from tests.helpers import ROOT

    probe = """
from gevent import monkey; monkey.patch_all()
import gevent, redis
from bsn import extensions
extensions.CALL_TIMEOUT = 0.1
class Stuck(extensions.ScriptBatcher):
    def _execute(self, batch):
        gevent.sleep(2)
        return [None] * len(batch)
try:
    Stuck(client=None).call(None, [], [])
    print("answered")
except redis.TimeoutError:
    print("redis.TimeoutError")
except BaseException as exc:
    print(type(exc).__name__)
"""
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.stdout.split()[-1:] == ["redis.TimeoutError"], out.stderr
