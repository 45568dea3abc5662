"""The Socket.IO message queue on Redis, made to recover from a Redis restart without losing events unseen."""

from __future__ import annotations

import time

import redis
import socketio

CHANNEL = "flask-socketio"  # Flask-SocketIO's default: every process, web or worker, publishes here
MAX_RETRY_SLEEP = 4  # python-socketio waits up to 60 s between tries; a restarted Redis should be used at once


class RecoveringRedisManager(socketio.RedisManager):
    """python-socketio's RedisManager, plus: once its subscription comes back after a lost connection,
    every socket of this process is dropped, so its client reconnects and syncs.

    Why: events published while no subscription was open (the outage, and the retry wait after it)
    are gone for good, and a client whose socket stayed open would never learn it missed them. A
    dropped transport is what every client already handles: it reconnects, and BSN's clients sync
    on reconnect. The loop is python-socketio's own `_redis_listen_with_retries` with that added.
    """

    def __init__(self, url: str, max_connections: int | None = None, **kwargs) -> None:
        kwargs.setdefault("channel", CHANNEL)
        super().__init__(url, **kwargs)
        self._max_connections = max_connections
        self._pool = None
        self._batcher = None

    def _redis_connect(self):
        # python-socketio's, on one pool built once, where a publish waits for a free connection
        # (bsn.extensions.redis_pool) instead of failing past redis-py's 100. python-socketio calls this
        # again after every failed publish: that now costs a client object, not a new pool.
        if self._max_connections is None:
            return super()._redis_connect()
        if self._pool is None:
            from bsn.extensions import redis_pool

            self._pool = redis_pool(self.redis_url, self._max_connections)
        self.redis = redis.Redis(connection_pool=self._pool)
        self.pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        self.connected = True

    def _publish(self, data):
        # On gevent, an event is published in the batched round trip of the process's other publishes
        # (bsn.extensions.ScriptBatcher): no pooled connection's check-out, socket poll and metrics per event.
        # Nobody waits for the reply: python-socketio has delivered the event to this process's sockets already,
        # and the caller (often the task storing a batch of chat sends, which others queue behind) goes on at once;
        # publishes still leave in the order they were made. A failure is not published again: it may have reached
        # Redis (a timeout), and the batcher has already tried a second connection where the first one was found
        # closed. Like python-socketio's own publish after its retry, the event is then dropped (it is stored;
        # clients sync on reconnect).
        from bsn.extensions import ScriptBatcher, on_gevent

        if self._max_connections is None or not on_gevent():
            return super()._publish(data)
        try:
            if self._batcher is None:
                if not self.connected:
                    self._redis_connect()
                self._batcher = ScriptBatcher(self.redis)
            self._batcher.send([("PUBLISH", self.channel, self.json.dumps(data))], self._not_published)
        except redis.RedisError as exc:
            self._not_published(exc)
        return None

    def _not_published(self, exc: BaseException) -> None:
        self._get_logger().error("Cannot publish to redis... giving up", extra={"redis_exception": str(exc)})

    def _redis_listen_with_retries(self):
        retry_sleep = 1
        subscribed = False
        lost = False
        while True:
            try:
                if not subscribed:
                    self._redis_connect()
                    # Its own reference: a publisher's retry replaces self.pubsub, and listening on that
                    # unsubscribed one would return at once, again and again, without ever yielding.
                    pubsub = self.pubsub
                    pubsub.subscribe(self.channel)
                    subscribed = True
                    retry_sleep = 1
                    if lost:
                        lost = False
                        self._drop_local_sockets()
                yield from pubsub.listen()
                raise ConnectionError("the subscription ended")
            except Exception as exc:  # noqa: BLE001 - as python-socketio: any failure means reconnect
                self._get_logger().error(
                    "Cannot receive from redis... retrying in %s secs", retry_sleep, extra={"redis_exception": str(exc)}
                )
                subscribed = False
                lost = True
                time.sleep(retry_sleep)
                retry_sleep = min(retry_sleep * 2, MAX_RETRY_SLEEP)

    def _drop_local_sockets(self) -> None:
        eio = self.server.eio
        sockets = list(eio.sockets.values())
        self._get_logger().warning("message queue back: dropping %d socket(s) so their clients resync", len(sockets))
        for socket in sockets:
            try:
                # abort: no close packet, so clients see a lost transport and reconnect (a close means "stay away").
                socket.close(wait=False, abort=True, reason=eio.reason.TRANSPORT_CLOSE)
            except Exception:  # noqa: BLE001 - one bad socket must not stop the listener
                self._get_logger().exception("could not drop socket %s", socket.sid)
