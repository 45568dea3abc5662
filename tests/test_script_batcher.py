"""The batcher of concurrent Redis calls (`bsn.extensions.ScriptBatcher`): one round trip for many, on its own
connection, with each call's reply or error its own."""

import os

import pytest
import redis
from gevent.event import AsyncResult

from bsn.extensions import ScriptBatcher, _raise_first_error, redis_pool, redis_store


def test_the_script_batcher_pipelines_calls_and_reloads_scripts_redis_lost(ctx):
    client = redis_store.client
    script = client.register_script("return ARGV[1] .. KEYS[1]")
    client.script_flush()
    batch = [(script, ["k1"], ["a"], None), (script, ["k2"], ["b"], None)]
    assert ScriptBatcher(client)._execute(batch) == [b"ak1", b"bk2"]
    assert ScriptBatcher(client)._execute(batch) == [b"ak1", b"bk2"]


def test_the_script_batcher_keeps_its_connection_and_replaces_one_that_redis_closed(ctx):
    client = redis_store.client
    echo = client.register_script("return ARGV[1]")
    failing = client.register_script("return redis.error_reply('nope')")
    batcher = ScriptBatcher(client)
    replies = batcher._execute([(echo, [], ["a"], None), (failing, [], [], None), (echo, [], ["b"], None)])
    assert replies[0] == b"a" and replies[2] == b"b"
    assert isinstance(replies[1], redis.ResponseError) and "nope" in str(replies[1])
    held = connection_id(batcher)
    assert batcher._execute([(echo, [], ["c"], None)]) == [b"c"] and connection_id(batcher) == held

    client.client_kill_filter(_id=held)  # as a Redis restart would
    assert batcher._execute([(echo, [], ["d"], None)]) == [b"d"]
    assert connection_id(batcher) != held


def test_the_script_batcher_sends_command_lists_beside_scripts(ctx):
    client = redis_store.client
    echo = client.register_script("return ARGV[1]")
    batch = [
        (None, [("SET", "bk", "v"), ("GET", "bk")], None, None),
        (echo, [], ["a"], None),
        (None, [("MULTI",), ("INCR", "bk"), ("SET", "bk2", "w"), ("EXEC",)], None, None),
    ]
    plain, scripted, transaction = ScriptBatcher(client)._execute(batch)
    assert plain == [b"OK", b"v"] and scripted == b"a"
    assert transaction[:3] == [b"OK", b"QUEUED", b"QUEUED"]
    assert isinstance(transaction[3][0], redis.ResponseError) and transaction[3][1] == b"OK"
    with pytest.raises(redis.ResponseError):
        _raise_first_error(transaction)  # what the caller of run_commands gets
    assert redis_store.run_commands([("GET", "bk2")]) == [b"w"]  # without gevent: straight through


def connection_id(batcher) -> int:
    batcher.connection.send_command("CLIENT", "ID")
    return batcher.connection.read_response()


def test_a_failed_round_trip_fails_each_waiting_call_with_the_redis_error():
    batcher = ScriptBatcher(redis.Redis(connection_pool=redis_pool("redis://127.0.0.1:1/0", 2)))  # nothing there
    script = batcher.client.register_script("return 1")
    commands, scripted = AsyncResult(), AsyncResult()
    batcher.pending = [(None, [("PING",)], None, commands), (script, [], [], scripted)]
    batcher._flush()
    assert isinstance(commands.exception, redis.ConnectionError)  # what outages answer 503 for
    assert isinstance(scripted.exception, redis.ConnectionError)


class DiesAfterOneReply:
    """A connection that Redis drops after answering the first command of a batch."""

    pid = -1  # not the pool's own: releasing it only frees a slot

    def __init__(self) -> None:
        self.sent = self.read = 0

    def pack_commands(self, commands):
        return [b""]

    def send_packed_command(self, packed):
        self.sent += 1

    def read_response(self):
        self.read += 1
        if self.read > 1:
            raise redis.ConnectionError("gone mid-batch")
        return b"OK"

    def disconnect(self):
        pass


def test_a_batch_that_was_partly_answered_is_not_sent_again(redis_url):
    pool = redis_pool(redis_url, 4)
    pool.get_connection()  # the slot the stub stands in (the batcher gives it back when it drops the stub)
    batcher = ScriptBatcher(redis.Redis(connection_pool=pool))
    batcher.connection = dying = DiesAfterOneReply()
    with pytest.raises(redis.ConnectionError):
        batcher._send([(None, [("INCR", "a")], None), (None, [("INCR", "b")], None)])
    assert dying.sent == 1 and batcher.connection is None  # the first INCR ran: a resend would count it twice


def test_a_value_redis_cannot_take_fails_its_call_only(ctx):
    echo = redis_store.client.register_script("return ARGV[1]")
    batcher = ScriptBatcher(redis_store.client)
    bad, good = batcher._execute([(None, [("SET", "k", {"not": "storable"})], None, None), (echo, [], ["x"], None)])
    assert isinstance(bad, redis.DataError) and good == b"x"
    held = batcher.connection
    assert batcher._execute([(echo, [], ["y"], None)]) == [b"y"] and batcher.connection is held


def test_a_lost_script_is_sent_again_but_the_commands_beside_it_run_once(ctx):
    client = redis_store.client
    echo = client.register_script("return ARGV[1]")
    client.script_flush()
    counted, echoed = ScriptBatcher(client)._execute([(None, [("INCR", "n")], None, None), (echo, [], ["y"], None)])
    assert counted == [1] and echoed == b"y" and client.get("n") == b"1"


def test_a_forked_batcher_forgets_the_parents_connection_and_calls(ctx, monkeypatch):
    import gevent
    import gevent.event

    import bsn.extensions

    class Answered:
        def get(self, timeout=None):
            return "sent"

    batcher = ScriptBatcher(redis_store.client)
    batcher.connection, batcher.pending, batcher.flushing, batcher.pid = object(), ["theirs"], True, os.getpid() + 1
    monkeypatch.setattr(bsn.extensions, "on_gevent", lambda: True)
    monkeypatch.setattr(gevent.event, "AsyncResult", Answered)  # only the reset is looked at: no hub, no flush
    monkeypatch.setattr(gevent, "spawn", lambda function: None)
    assert batcher.commands([("PING",)]) == "sent"
    assert batcher.connection is None and batcher.pid == os.getpid() and batcher.flushing
    assert [call[0:3] for call in batcher.pending] == [(None, [("PING",)], None)]


def test_commands_sent_without_waiting_go_in_order_and_tell_their_failure(redis_url):
    """On gevent (in a patched subprocess), as the Socket.IO queue publishes."""
    import subprocess
    import sys

    from tests.helpers import ROOT

    probe = f"""
from gevent import monkey; monkey.patch_all()
import time, gevent, redis
from bsn.extensions import ScriptBatcher
client = redis.Redis.from_url({redis_url!r})
client.delete("sent", "text")
client.set("text", "not a number")
batcher, failures = ScriptBatcher(client), []
for i in range(50):
    batcher.send([("RPUSH", "sent", i)], failures.append)
    if i == 20:
        batcher.send([("INCR", "text")], failures.append)
# A call made after them is answered after they ran: one connection, one batch at a time, in order.
print(batcher.call(None, [("LRANGE", "sent", 0, -1)], None)[0] == [str(i).encode() for i in range(50)])
deadline = time.monotonic() + 10
while not failures and time.monotonic() < deadline:
    gevent.sleep(0.01)
print(len(failures), type(failures[0]).__name__ if failures else None)
"""
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["True", "1", "ResponseError"], out.stderr
