"""Group commit: the writes that concurrent callers of one process ask for at once are stored by one transaction.

A commit, its statements and the session around them cost a web process far more than the rows they store
(two thirds of a chat send's CPU went there under a burst). A caller that finds nobody storing stores its own
item at once, so an idle process pays nothing extra. Callers that arrive while a batch is being stored queue,
and the next batch takes all of them (up to `max_batch`): one transaction and one commit for them all. Each
caller gets back its own item's outcome, a result or an exception, as if it had run alone.
"""

from __future__ import annotations

import copy
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from flask import current_app


class Item:
    """One caller's request, and once stored, its outcome."""

    __slots__ = ("_done", "error", "request", "result")

    def __init__(self, request) -> None:
        self.request = request
        self.result = None
        self.error: BaseException | None = None
        self._done = threading.Event()

    def outcome(self):
        if self.error is not None:
            raise self.error
        return self.result


def _copy(error: Exception) -> Exception:
    """The same failure as an exception of its own: one raised by several callers at once would gather all their
    tracebacks (and their frames' locals) in one object."""
    try:
        copied = copy.copy(error)
    except Exception:  # noqa: BLE001 - an exception that cannot be copied is told as what it was
        copied = RuntimeError(f"group commit: {error!r}")
    copied.__cause__, copied.__traceback__ = error, None
    return copied


class GroupCommit:
    """`store(requests)` returns one outcome per request, in order: a result, or an exception instance for that
    request alone. It runs in an app context of `app`; an exception it raises is every request's outcome."""

    def __init__(self, app, store: Callable[[Sequence], list], max_batch: int) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._app = app
        self._store = store
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._queue: deque[Item] = deque()
        self._storing = False

    @property
    def waiting(self) -> int:
        return len(self._queue)

    def submit(self, request):
        """Store `request` with whatever else is waiting, and return its outcome (or raise its error)."""
        item = Item(request)
        with self._lock:
            self._queue.append(item)
            lead = not self._storing
            self._storing = True
        if lead:
            # Nobody was storing: this caller stores at once, in its own context, and hands any queue that
            # built up meanwhile to a task of its own, so that its own answer does not wait for others'.
            try:
                self._run(self._take())
            finally:
                self._hand_over()
        else:
            item._done.wait()
        return item.outcome()

    def _take(self) -> list[Item]:
        with self._lock:
            return [self._queue.popleft() for _ in range(min(self._max_batch, len(self._queue)))]

    def _hand_over(self) -> None:
        """Called by whoever stored last: either nobody is storing now, or a new task drains the queue."""
        with self._lock:
            if not self._queue:
                self._storing = False
                return
        try:
            # A thread under plain threading, a greenlet in a gevent-patched process.
            threading.Thread(target=self._drain, name="group-commit", daemon=True).start()
        except RuntimeError:  # no new thread (interpreter shutdown, a thread limit): drained here instead
            self._drain()

    def _drain(self) -> None:
        try:
            with self._app.app_context():
                while True:
                    # Lets the waiting callers take their answers, and new requests join the next batch.
                    time.sleep(0)
                    batch = self._take()
                    if not batch:
                        break
                    self._run(batch)
        finally:
            # Also after an abort (GreenletExit, SystemExit): nothing queued may be left waiting.
            self._hand_over()

    def _run(self, batch: list[Item]) -> None:
        outcomes = None
        try:
            outcomes = self._store([item.request for item in batch])
            if len(outcomes) != len(batch):
                raise RuntimeError(f"group commit: {len(outcomes)} outcomes for {len(batch)} requests")
        except Exception as error:  # noqa: BLE001 - every caller of the batch gets the failure
            outcomes = [error, *(_copy(error) for _ in batch[1:])]
        finally:
            if outcomes is None:  # the storing task itself was stopped: its callers are told, not left waiting
                outcomes = [RuntimeError("group commit: the storing task was stopped") for _ in batch]
            for item, outcome in zip(batch, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    item.error = outcome
                else:
                    item.result = outcome
                item._done.set()


def for_app(name: str, store: Callable[[Sequence], list], max_batch: int) -> GroupCommit:
    """The current app's GroupCommit called `name`, made on first use: one per process and app, as its queue
    and storing task are this process's."""
    app = current_app._get_current_object()
    group = app.extensions.get(name)
    if group is None:
        group = app.extensions.setdefault(name, GroupCommit(app, store, max_batch))
    return group
