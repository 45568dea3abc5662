"""Per-socket event queues (bsn/sockets/inbox.py) on a real python-socketio server, driven as its reader drives it."""

import threading

import pytest
import socketio
from socketio import packet

from bsn.sockets.inbox import Inbox
from tests.helpers import wait_until

NS = "/chat"


class Stopped(BaseException):
    """As gevent's GreenletExit or a stray Timeout: not an Exception, so no handler catches it."""


class Harness:
    """A threading-mode python-socketio server whose `step` handler waits for the test to release each call."""

    def __init__(self, max_queued: int = 10) -> None:
        self.server = socketio.Server(async_mode="threading")
        self.inbox = Inbox(self.server, max_queued).install()
        self.started: list = []
        self.finished: list = []
        self.gates: dict = {}
        self.sent: list = []
        self.server._send_packet = lambda eio_sid, pkt: self.sent.append((eio_sid, pkt))
        self.server.on("step", self._step, namespace=NS)

    def _step(self, sid, value):
        self.started.append(value)
        gate = self.gates.setdefault(value, threading.Event())
        assert gate.wait(10), f"step {value} was never released"
        self.finished.append(value)
        if value == "boom":
            raise RuntimeError("a failing handler")
        if value == "stop":
            raise Stopped("the task itself is stopped")
        return {"done": value}

    def connect(self, eio_sid: str = "eio-1") -> str:
        return self.server.manager.connect(eio_sid, NS)

    def read(self, value, eio_sid: str = "eio-1", ack_id: int | None = None) -> None:
        """What python-socketio's reader does with one EVENT packet."""
        self.server._handle_event(eio_sid, NS, ack_id, ["step", value])

    def release(self, value) -> None:
        self.gates.setdefault(value, threading.Event()).set()

    def packets(self, kind: int) -> list:
        return [pkt for _, pkt in self.sent if pkt.packet_type == kind]


@pytest.fixture
def harness():
    made = []

    def make(**kwargs):
        made.append(Harness(**kwargs))
        return made[-1]

    yield make
    for h in made:  # no thread left waiting on a gate
        for gate in list(h.gates.values()):
            gate.set()


def test_a_sockets_events_run_one_at_a_time_in_order_without_holding_up_its_reader(harness):
    h = harness()
    sid = h.connect()
    for value in (1, 2, 3):
        h.read(value)  # returns at once, though step 1 is still running: the reader reads on (pongs too)
    wait_until(lambda: h.started == [1])
    assert h.inbox.waiting(sid) == 3
    for value in (1, 2, 3):
        h.release(value)
    wait_until(lambda: h.finished == [1, 2, 3])
    wait_until(lambda: h.inbox.waiting(sid) == 0)
    assert h.started == [1, 2, 3]


def test_other_sockets_are_not_held_up_by_a_busy_one(harness):
    h = harness()
    h.connect("eio-1")
    h.connect("eio-2")
    h.read("slow", "eio-1")
    h.read("other", "eio-2")
    wait_until(lambda: sorted(h.started) == ["other", "slow"])
    h.release("other")
    wait_until(lambda: h.finished == ["other"])
    h.release("slow")


def test_acks_answer_each_event_with_its_handlers_result(harness):
    h = harness()
    h.connect()
    h.release(1)
    h.read(1, ack_id=7)
    wait_until(lambda: h.packets(packet.ACK))
    (ack,) = h.packets(packet.ACK)
    assert ack.id == 7 and ack.data == [{"done": 1}]


def test_past_the_bound_an_event_is_refused_with_an_error_and_never_runs(harness):
    h = harness(max_queued=2)
    sid = h.connect()
    h.read(1)
    h.read(2)
    h.read(3, ack_id=5)  # the running one and one waiting are the bound
    wait_until(lambda: h.started == [1])
    (error,) = h.packets(packet.EVENT)
    assert error.namespace == NS and error.data[0] == "error"
    assert error.data[1]["code"] == "service_unavailable" and error.data[1]["event"] == "step"
    (ack,) = h.packets(packet.ACK)
    assert ack.id == 5 and ack.data == [{"error": error.data[1]}]
    h.release(1)
    h.release(2)
    wait_until(lambda: h.inbox.waiting(sid) == 0)
    assert h.finished == [1, 2]
    h.read(4)  # room again
    h.release(4)
    wait_until(lambda: h.finished == [1, 2, 4])


def test_a_failing_event_does_not_stop_the_ones_after_it(harness):
    h = harness()
    h.connect()
    h.read("boom")
    h.read("after")
    h.release("boom")
    h.release("after")
    wait_until(lambda: h.finished == ["boom", "after"])


def test_events_still_waiting_when_their_socket_disconnects_are_not_run(harness):
    h = harness()
    sid = h.connect()
    h.read(1)
    h.read(2)
    wait_until(lambda: h.started == [1])
    h.server.manager.disconnect(sid, NS)
    h.release(1)
    wait_until(lambda: h.inbox.waiting(sid) == 0)
    assert h.started == [1]
    h.read(3)  # from a socket no longer connected: dropped on arrival
    assert h.inbox.waiting(sid) == 0 and h.started == [1]


def test_without_async_handlers_events_run_inline(harness):
    h = harness()
    h.server.async_handlers = False  # as Flask-SocketIO's test client sets it
    h.connect()
    h.release(1)
    h.read(1)
    assert h.finished == [1]


@pytest.mark.parametrize("data", [{"a": 1}, [], None, ""])
def test_a_packet_that_is_no_event_list_fails_in_the_reader_and_queues_nothing(harness, data):
    h = harness()
    sid = h.connect()
    with pytest.raises(ValueError):
        h.server._handle_event("eio-1", NS, None, data)
    assert h.inbox.waiting(sid) == 0 and h.started == []


def test_a_string_payload_is_queued_as_python_socketio_took_it(harness):
    h = harness()
    sid = h.connect()
    h.server._handle_event("eio-1", NS, None, "step")  # python-socketio reads "s" as the event's name
    wait_until(lambda: h.inbox.waiting(sid) == 0)
    assert h.started == []  # no handler named "s": nothing ran, and nothing is left queued


def test_a_drain_stopped_mid_event_hands_the_rest_of_its_queue_to_a_new_one(harness, monkeypatch):
    import threading as threads

    monkeypatch.setattr(threads, "excepthook", lambda args: None)  # the stopped thread's exception is expected
    h = harness()
    sid = h.connect()
    h.read("stop")
    h.read(2)
    h.read(3)
    h.release("stop")
    h.release(2)
    h.release(3)
    wait_until(lambda: h.finished == ["stop", 2, 3])
    wait_until(lambda: h.inbox.waiting(sid) == 0)
    h.read(4)  # the socket is not left behind a drain that no longer runs
    h.release(4)
    wait_until(lambda: h.finished == ["stop", 2, 3, 4])
