"""The group commit on its own: batches, one outcome per caller, failures that reach every caller and stall none."""

import threading
import time

import pytest
from flask import Flask

from bsn.groupcommit import GroupCommit


@pytest.fixture
def bare_app():
    return Flask(__name__)


def wait_until(condition, what):
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


class Held:
    """A store that holds its first batch until released, and records every batch."""

    def __init__(self, answer):
        self.batches, self.release, self._answer = [], threading.Event(), answer

    def __call__(self, requests):
        self.batches.append(list(requests))
        self.release.wait(10)
        return self._answer(requests)


def submit_all(group, requests):
    """Submit each request from a thread of its own; when the group is busy storing, each is queued before the
    next starts, so the queue holds them in order. Returns the threads and {request: outcome or exception}."""
    outcomes = {}

    def one(request):
        try:
            outcomes[request] = group.submit(request)
        except Exception as error:  # noqa: BLE001 - the outcome under test
            outcomes[request] = error

    def queued(request):
        return lambda: not group._storing or any(item.request == request for item in list(group._queue))

    threads = []
    for request in requests:
        busy = group._storing
        thread = threading.Thread(target=one, args=(request,))
        thread.start()
        threads.append(thread)
        if busy:
            wait_until(queued(request), f"{request!r} to queue")
    return threads, outcomes


def join(threads):
    for thread in threads:
        thread.join(timeout=10)
        assert not thread.is_alive(), "a caller is still waiting"


def test_callers_who_arrive_during_a_batch_are_stored_together_and_answered_alone(bare_app):
    store = Held(lambda requests: [ValueError(r) if r % 3 == 0 else r * 10 for r in requests])
    group = GroupCommit(bare_app, store, max_batch=4)
    first, outcomes = submit_all(group, [1])
    wait_until(lambda: store.batches, "the first batch")
    rest, more = submit_all(group, range(2, 11))
    wait_until(lambda: group.waiting == 9, "nine waiting callers")
    store.release.set()
    join(first + rest)
    outcomes.update(more)
    # The first alone (nobody was storing), then the queue in order, at most four a batch.
    assert store.batches == [[1], [2, 3, 4, 5], [6, 7, 8, 9], [10]]
    assert {r: o for r, o in outcomes.items() if not isinstance(o, Exception)} == {
        r: r * 10 for r in (1, 2, 4, 5, 7, 8, 10)
    }
    assert all(isinstance(outcomes[r], ValueError) and outcomes[r].args == (r,) for r in (3, 6, 9))
    wait_until(lambda: not group._storing, "the queue to be idle")
    assert group.waiting == 0


def test_a_failing_store_fails_each_caller_of_its_batch_with_an_error_of_its_own(bare_app):
    release = threading.Event()
    calls = []

    def store(requests):
        calls.append(list(requests))
        release.wait(10)
        if "boom" in requests:
            raise RuntimeError("database gone")
        return [r.upper() for r in requests]

    group = GroupCommit(bare_app, store, max_batch=10)
    first, outcomes = submit_all(group, ["first"])
    wait_until(lambda: calls, "the first batch")
    rest, more = submit_all(group, ["boom", "other"])
    release.set()
    join(first + rest)
    assert calls == [["first"], ["boom", "other"]] and outcomes["first"] == "FIRST"
    boom, other = more["boom"], more["other"]
    assert isinstance(boom, RuntimeError) and isinstance(other, RuntimeError) and str(other) == "database gone"
    assert boom is not other and other.__cause__ is boom  # no traceback gathers both callers' frames
    assert group.submit("fine") == "FINE"


def test_a_batch_holds_at_least_one(bare_app):
    with pytest.raises(ValueError, match="at least 1"):
        GroupCommit(bare_app, list, max_batch=0)


def test_a_store_that_answers_the_wrong_number_of_outcomes_fails_loudly(bare_app):
    group = GroupCommit(bare_app, lambda requests: [], max_batch=10)
    with pytest.raises(RuntimeError, match="0 outcomes for 1 requests"):
        group.submit("x")
    assert not group._storing


class Stopped(BaseException):
    """Like GreenletExit: not an Exception, so no handler on the way catches it."""


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_stopped_storing_task_leaves_nobody_waiting(bare_app):
    """A BaseException (a greenlet killed at shutdown) in the task draining the queue: its batch's callers are
    told, and what was queued behind it is stored by a new task."""
    store = Held(lambda requests: list(requests))
    stopped = []

    def stop_once(requests):
        if "stop" in requests and not stopped:
            stopped.append(requests)
            raise Stopped
        return store(requests)

    group = GroupCommit(bare_app, stop_once, max_batch=1)
    first, outcomes = submit_all(group, ["first"])
    wait_until(lambda: store.batches, "the first batch")
    rest, more = submit_all(group, ["stop"])
    wait_until(lambda: group.waiting == 1, "the one to be stopped")
    after, later = submit_all(group, ["after"])
    wait_until(lambda: group.waiting == 2, "one more behind it")
    store.release.set()
    join(first + rest + after)
    outcomes.update(more | later)
    assert outcomes["first"] == "first" and outcomes["after"] == "after"
    assert isinstance(outcomes["stop"], RuntimeError) and "stopped" in str(outcomes["stop"])
    wait_until(lambda: not group._storing, "the queue to be idle")
    # The stopped task's own exception ends its thread: awaited here, so pytest reports it with this test.
    join([t for t in threading.enumerate() if t.name == "group-commit"])
