"""The first SIF delivery attempt, made by the stamping process right after its settle
commit instead of a second trip through the broker (issue 15).

Contract:

* **The outbox row stays the record.** This only makes the first ``deliver()`` call
  sooner. It claims the row exactly as the notify task does (one-statement CAS with a
  lease), so when both run, one wins the claim and the other does nothing.
* **SIF's latency never reaches stamping.** Each stamping process has one delivery thread
  and a hand-off slot of one. ``take()`` never blocks: when the slot is full (SIF is slow,
  or a delivery is still going), the ring goes to the notify task as it did before. A
  stamp task waits for nothing but its own settle.
* **Nothing is lost when the process dies.** A row handed over but not yet claimed is
  ``queued`` and the sweeper rings it after its grace; a row claimed is ``sending`` with a
  lease and is taken over when the lease expires (SIF answers the resend 204 or 409).
* **Follow-ups ring as the notify task rings them**: a retry on the countdown fast path
  after the thread's own commit; an unexpected error hands the row to the notify task.
* **Its log lines read as the notify task's** (``task_name`` ``billing.notify_sif``), with
  ``task_id`` ``first-<hex>``, the suffix of the lease owner in the delivery attempt.

Measured with ``bench.pipeline`` (README, "CPU per invoice"): the hop it saves is a
broker publish, a consumer delivery, three Flower events and a Celery task run.
``BILLING_SIF_FIRST_DELIVERY=false`` turns it off (every delivery through the notify task).
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from structlog.contextvars import bind_contextvars, clear_contextvars

from worker import doorbell
from worker.celery_app import NOTIFY_TASK
from worker.doorbell import Ring

if TYPE_CHECKING:
    from celery import Celery

    from worker.resources import Resources

log = logging.getLogger(__name__)

# deliver(notification_id, owner) -> the follow-ups to ring after its commit
Deliver = Callable[[str, str], Iterable[Ring]]
RingAll = Callable[[Iterable[Ring]], int]

_STOP = object()


class FirstDelivery:
    """One delivery thread per process, started with the first ring it takes."""

    def __init__(self, deliver: Deliver, ring_all: RingAll) -> None:
        self._deliver = deliver
        self._ring_all = ring_all
        self._slot: queue.Queue[object] = queue.Queue(maxsize=1)
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def take(self, rings: Iterable[Ring]) -> list[Ring]:
        """The rings left for the broker: each due-now SIF ring this process's thread
        takes is not published (at most one waits for the thread; never blocks)."""
        left: list[Ring] = []
        for bell in rings:
            if bell.task == NOTIFY_TASK and not bell.countdown and self._offer(bell):
                continue
            left.append(bell)
        return left

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

    def _offer(self, bell: Ring) -> bool:
        self._ensure_thread()
        try:
            self._slot.put_nowait(bell)
        except queue.Full:
            return False
        return True

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
        host = socket.gethostname()
        while True:
            item = self._slot.get()
            if item is _STOP or not isinstance(item, Ring):
                return
            run_id = f"first-{uuid.uuid4().hex[:8]}"
            owner = f"{host}:{os.getpid()}:{run_id}"
            # Log lines read as the notify task's, with this run's id (the same work).
            clear_contextvars()
            bind_contextvars(task_id=run_id, task_name=NOTIFY_TASK, notification_id=item.row_id)
            try:
                follow_ups = self._deliver(item.row_id, owner)
            except Exception:
                log.exception("first SIF delivery of notification %s failed; the notify "
                              "task takes it", item.row_id)
                follow_ups = (item,)
            self._ring_all(follow_ups)


def for_worker(app: Celery, r: Resources) -> FirstDelivery:
    """A ``FirstDelivery`` for a worker process: ``deliver()`` with its own pooled
    connection (the stamp task keeps its own), the process's SIF client and settings."""
    from worker.db.session import pinned_sessions
    from worker.invoices.notify import deliver

    def run(notification_id: str, owner: str) -> Iterable[Ring]:
        with pinned_sessions(r.engine) as sessions:
            outcome = deliver(sessions, notification_id, client=r.sif, settings=r.settings,
                              owner=owner)
        return outcome.follow_ups

    return FirstDelivery(run, lambda rings: doorbell.ring_all(app, rings))
