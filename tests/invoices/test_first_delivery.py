"""FirstDelivery (worker/invoices/first_delivery.py): which rings its thread takes, that a
busy thread never makes the stamp task wait, that the follow-ups ring, and that an error
hands the row to the notify task. Real threads; the delivery is a plain function here (the
pipeline tests run the real one against the SIF sandbox)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

import pytest

from worker import doorbell
from worker.doorbell import Ring
from worker.invoices.first_delivery import FirstDelivery


class Recorder:
    """What the thread delivered and what it rang, with a gate to keep it busy."""

    def __init__(self, fail: bool = False) -> None:
        self.delivered: list[tuple[str, str]] = []
        self.rung: list[Ring] = []
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()
        self.fail = fail
        self.done = threading.Semaphore(0)

    def deliver(self, notification_id: str, owner: str) -> Iterable[Ring]:
        self.started.set()
        assert self.gate.wait(10)
        self.delivered.append((notification_id, owner))
        if self.fail:
            raise RuntimeError("database went away")
        return (doorbell.notify(notification_id, countdown=5.0),)  # a retry, say

    def ring_all(self, rings: Iterable[Ring]) -> int:
        self.rung.extend(rings)
        self.done.release()
        return 0

    def wait(self, n: int) -> None:
        for _ in range(n):
            assert self.done.acquire(timeout=10)


def first(rec: Recorder) -> FirstDelivery:
    return FirstDelivery(rec.deliver, rec.ring_all)


def test_a_due_sif_ring_is_delivered_by_the_thread_and_not_published() -> None:
    rec = Recorder()
    fd = first(rec)
    stamp_retry = doorbell.stamp("inv-1", countdown=3.0)
    later = doorbell.notify("n-later", countdown=30.0)
    left = fd.take([doorbell.notify("n-1", reference="R-1"), stamp_retry, later])
    assert left == [stamp_retry, later]  # a countdown or a stamp ring goes to the broker
    rec.wait(1)
    assert [n for n, _ in rec.delivered] == ["n-1"]
    assert rec.delivered[0][1].split(":")[-1].startswith("first-")  # its own lease owner
    assert rec.rung == [doorbell.notify("n-1", countdown=5.0)]  # the delivery's follow-up
    fd.close()


def test_a_busy_thread_leaves_the_ring_to_the_notify_task_without_waiting() -> None:
    rec = Recorder()
    rec.gate.clear()  # SIF is slow: the first delivery does not finish
    fd = first(rec)
    assert fd.take([doorbell.notify("n-1")]) == []
    assert rec.started.wait(10)  # the thread holds n-1
    assert fd.take([doorbell.notify("n-2")]) == []  # one waits in the slot
    t0 = time.monotonic()
    third = doorbell.notify("n-3")
    assert fd.take([third]) == [third]  # the slot is full: published as before
    assert time.monotonic() - t0 < 1.0  # (a guard against blocking, not a benchmark)
    rec.gate.set()
    rec.wait(2)
    assert [n for n, _ in rec.delivered] == ["n-1", "n-2"]
    fd.close()


def test_an_error_in_the_delivery_hands_the_row_to_the_notify_task() -> None:
    rec = Recorder(fail=True)
    fd = first(rec)
    bell = doorbell.notify("n-1")
    assert fd.take([bell]) == []
    rec.wait(1)
    assert rec.rung == [bell]  # published for the notify task after all
    assert fd.take([doorbell.notify("n-2")]) == []  # the thread lives on
    rec.wait(1)
    fd.close()


def test_close_lets_the_delivery_in_hand_finish() -> None:
    rec = Recorder()
    rec.gate.clear()
    fd = first(rec)
    fd.take([doorbell.notify("n-1")])
    assert rec.started.wait(10)
    threading.Timer(0.2, rec.gate.set).start()
    fd.close(timeout_s=10)
    assert [n for n, _ in rec.delivered] == ["n-1"]


@pytest.mark.parametrize("countdown", [None, 0.0])
def test_due_now_means_no_countdown(countdown: float | None) -> None:
    rec = Recorder()
    fd = first(rec)
    assert fd.take([doorbell.notify("n-1", countdown=countdown)]) == []
    rec.wait(1)
    fd.close()


class Born:
    """Stands for ``notify.Claimed`` (the thread only reads its ``id``)."""

    def __init__(self, id: str) -> None:
        self.id = id


def test_a_seat_waits_for_its_stamp_task_and_sends_the_row_born_claimed() -> None:
    """The stamp task takes a seat before it settles; the thread waits for the seat to be
    filled after the commit, then sends the born row as the seat's owner (no claim). The
    row's own ring is not published; a retry ring is."""
    rec = Recorder()
    sent: list[tuple[str, str]] = []

    def send(claimed: object, owner: str) -> Iterable[Ring]:
        sent.append((claimed.id, owner))  # type: ignore[attr-defined]
        return ()

    fd = FirstDelivery(rec.deliver, rec.ring_all, send)  # type: ignore[arg-type]
    retry = doorbell.stamp("inv-2", countdown=3.0)
    with fd.seat() as seat:
        assert seat.owner is not None and seat.owner.split(":")[-1].startswith("first-")
        time.sleep(0.2)  # the thread is waiting on the seat meanwhile
        assert sent == []
        left = seat.hand([retry], Born("n-born"))  # type: ignore[arg-type]
    assert left == [retry]
    rec.wait(1)
    assert sent == [("n-born", seat.owner)] and rec.delivered == []
    fd.close()


def test_a_seat_left_unfilled_is_released_and_a_full_slot_gives_an_empty_seat() -> None:
    """A stamp task that fails releases its seat (the thread goes on to the next one); a
    seat taken while the slot is full has no owner and hands every ring to the broker."""
    rec = Recorder()
    rec.gate.clear()  # the first delivery does not finish yet
    fd = first(rec)
    with pytest.raises(RuntimeError), fd.seat():
        raise RuntimeError("the stamp task failed before its commit")
    deadline = time.monotonic() + 5
    while not fd._slot.empty() and time.monotonic() < deadline:  # the thread drops it
        time.sleep(0.01)
    assert fd.take([doorbell.notify("n-1")]) == []
    assert rec.started.wait(10)  # the thread holds n-1: the released seat did not block it
    with fd.seat() as waiting:  # this one waits in the slot
        with fd.seat() as full:
            bell = doorbell.notify("n-3")
            assert full.owner is None and full.hand([bell]) == [bell]
        waiting.hand([doorbell.notify("n-2")])
    rec.gate.set()
    rec.wait(2)
    assert [n for n, _ in rec.delivered] == ["n-1", "n-2"]
    fd.close()
