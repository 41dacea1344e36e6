"""The first SIF delivery attempt, made by the stamping process right after its settle
commit instead of a second trip through the broker (issue 15).

    stamp task: seat() ── stamp_invoice(deliverer=seat.owner) ── commit ── seat.hand(...)
    thread:     waits on the seat ──────────────────────────────────────▶ send / deliver

Contract:

* **The outbox row stays the record.** A stamp task takes a *seat* before it settles. A
  fresh stamp's OK row is then born claimed by the seat's owner (``sending``, leased, its
  first attempt counted: ``lifecycle.outbox(leased_to=...)``), in the settle's own
  transaction, and the thread sends it with what the settle wrote (``notify.send``: no
  claim, no read). Anything else the task hands over (a NOK, an OK written while a
  breaker was not quiet) the thread claims exactly as the notify task does, so when both
  run, one wins the claim and the other does nothing.
* **SIF's latency never reaches stamping.** Each stamping process has one delivery thread
  and a slot of one seat. ``seat()`` never blocks: when the slot is full (SIF is slow,
  or a delivery is still going), the seat is empty, the OK is born ``queued`` and its
  ring goes to the notify task as it did before. A stamp task waits for nothing but its
  own settle; the thread waits for the seat it holds to be filled.
* **Nothing is lost when the process dies.** A row handed over but not yet claimed is
  ``queued`` and the sweeper rings it after its grace; a row claimed (or born claimed) is
  ``sending`` with a lease and is taken over when the lease expires (SIF answers the
  resend 204 or 409). A seat the task never fills (it failed) is released at its end.
* **Follow-ups ring as the notify task rings them**: a retry on the countdown fast path
  after the thread's own commit; an unexpected error hands the row to the notify task.
* **Its log lines read as the notify task's** (``task_name`` ``billing.notify_sif``), with
  ``task_id`` ``first-<hex>``, the suffix of the lease owner in the delivery attempt.

Measured with ``bench.pipeline`` (README, "CPU per invoice"): the hop it saves is a
broker publish, a consumer delivery, three Flower events and a Celery task run; the born
claim saves the claim transaction (its UPDATE and SELECT, BEGIN, COMMIT and a pool
checkout): 8 statements per invoice become 6, Python function calls 11,293 -> 10,624.
``BILLING_SIF_FIRST_DELIVERY=false`` turns it off (every delivery through the notify task).
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from structlog.contextvars import bind_contextvars, clear_contextvars

from worker import doorbell
from worker.celery_app import NOTIFY_TASK
from worker.doorbell import Ring

if TYPE_CHECKING:
    from celery import Celery

    from worker.invoices.notify import Claimed
    from worker.resources import Resources

log = logging.getLogger(__name__)

# deliver(notification_id, owner) -> the follow-ups to ring after its commit
Deliver = Callable[[str, str], Iterable[Ring]]
# send(row born claimed, owner) -> the same (``notify.send``, no claim of its own)
Send = Callable[["Claimed", str], Iterable[Ring]]
RingAll = Callable[[Iterable[Ring]], int]

_STOP = object()


class Seat:
    """A place in the delivery thread's slot, taken by a stamp task before it settles.

    ``owner`` is the lease owner the thread delivers as: the stamp settle may write its OK
    row born claimed by it (``lifecycle.outbox(leased_to=owner)``). ``hand`` fills the
    seat after the commit; a seat left unfilled is released when its ``with`` ends. A seat
    with no owner stands for "the thread is busy (or off)": everything goes to the broker.
    """

    def __init__(self, owner: str | None = None) -> None:
        self.owner = owner
        self._item: Claimed | Ring | None = None
        self._filled = threading.Event()

    def hand(self, rings: Iterable[Ring], born: Claimed | None = None) -> list[Ring]:
        """The rings left for the broker. The thread takes the row born claimed by this
        seat's owner, or else the first due-now SIF ring (it claims that row itself)."""
        left: list[Ring] = []
        item: Claimed | Ring | None = born
        for bell in rings:
            if (item is None and self.owner is not None and bell.task == NOTIFY_TASK
                    and not bell.countdown):
                item = bell
                continue
            left.append(bell)
        self._fill(item)
        return left

    def release(self) -> None:
        """Nothing for the thread (a no-op once handed): the end of the task's ``with``."""
        self._fill(None)

    def _fill(self, item: Claimed | Ring | None) -> None:
        if not self._filled.is_set():
            self._item = item
            self._filled.set()

    def wait(self) -> Claimed | Ring | None:
        """(the thread) What the task handed over, once it has; None: nothing."""
        self._filled.wait()
        return self._item


class FirstDelivery:
    """One delivery thread per process, started with the first seat it gives."""

    def __init__(self, deliver: Deliver, ring_all: RingAll, send: Send | None = None) -> None:
        self._deliver = deliver
        self._send = send
        self._ring_all = ring_all
        self._slot: queue.Queue[object] = queue.Queue(maxsize=1)
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._host = socket.gethostname()

    @contextmanager
    def seat(self) -> Iterator[Seat]:
        """A seat for one stamp task (never blocks): an empty one when the slot is full.
        Whatever the task does not hand over is released when the block ends."""
        self._ensure_thread()
        seat = Seat(f"{self._host}:{os.getpid()}:first-{uuid.uuid4().hex[:8]}")
        try:
            self._slot.put_nowait(seat)
        except queue.Full:
            seat = Seat()
        try:
            yield seat
        finally:
            seat.release()

    def take(self, rings: Iterable[Ring]) -> list[Ring]:
        """The rings left for the broker: one due-now SIF ring is taken by this process's
        thread and not published (at most one waits for the thread; never blocks)."""
        with self.seat() as seat:
            return seat.hand(rings)

    def close(self, timeout_s: float = 10.0) -> None:
        """Let the delivery in hand finish (process shutdown): wait up to ``timeout_s``;
        whatever is left is recovered from the database (see the module's contract)."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        try:
            self._slot.put(_STOP, timeout=timeout_s)
        except queue.Full:
            return
        thread.join(timeout_s)

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._pid != os.getpid():  # forked: the parent's thread is not ours
                self._pid, self._thread = os.getpid(), None
                self._slot = queue.Queue(maxsize=1)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="sif-first-delivery",
                                                daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            seat = self._slot.get()
            if not isinstance(seat, Seat):  # _STOP
                return
            item = seat.wait()  # filled (or released) right after the stamp task's commit
            if item is None or seat.owner is None:
                continue
            row_id = item.row_id if isinstance(item, Ring) else item.id
            run_id = seat.owner.rsplit(":", 1)[1]
            # Log lines read as the notify task's, with this run's id (the same work).
            clear_contextvars()
            bind_contextvars(task_id=run_id, task_name=NOTIFY_TASK, notification_id=row_id)
            try:
                if isinstance(item, Ring):
                    follow_ups = self._deliver(row_id, seat.owner)
                else:
                    assert self._send is not None, "a row born claimed needs send()"
                    follow_ups = self._send(item, seat.owner)
            except Exception:
                log.exception("first SIF delivery of notification %s failed; the notify "
                              "task takes it", row_id)
                follow_ups = (item if isinstance(item, Ring) else doorbell.notify(row_id),)
            self._ring_all(follow_ups)


def for_worker(app: Celery, r: Resources) -> FirstDelivery:
    """A ``FirstDelivery`` for a worker process: ``deliver()`` with its own pooled
    connection (the stamp task keeps its own), the process's SIF client and settings."""
    from worker.db.session import pinned_sessions
    from worker.invoices.notify import deliver, send

    def run(notification_id: str, owner: str) -> Iterable[Ring]:
        with pinned_sessions(r.engine) as sessions:
            outcome = deliver(sessions, notification_id, client=r.sif, settings=r.settings,
                              owner=owner)
        return outcome.follow_ups

    def run_born(claimed: Claimed, owner: str) -> Iterable[Ring]:
        with pinned_sessions(r.engine) as sessions:
            outcome = send(sessions, claimed, client=r.sif, settings=r.settings, owner=owner)
        return outcome.follow_ups

    return FirstDelivery(run, lambda rings: doorbell.ring_all(app, rings), run_born)
