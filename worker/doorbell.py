"""The doorbell: tell a worker "look at row X", never raising.

The database is the record; a message only rings. A ring that cannot be published (the
broker is down) is logged and dropped: the row is already due in the database and the
sweeper rings it (``worker.invoices.sweep``). A ring due later than the countdown fast
path (``COUNTDOWN_MAX_S``) is not published at all: the sweeper rings it when it is due.

Every flow returns its follow-ups as ``Ring`` values and its caller rings them after the
commit (``ring_all``); producers (intake, operations) get a ``Bell`` for one task.

Flower shows a ring's ``label`` as the task's arguments (Celery's ``argsrepr``): the
invoice's short id and the ERP's reference, e.g. ``invoice 62db550d ref ERP-0001``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from worker.celery_app import NOTIFY_QUEUE, NOTIFY_TASK, STAMP_QUEUE, STAMP_TASK

if TYPE_CHECKING:
    from celery import Celery

log = logging.getLogger(__name__)

# A ring due sooner than this is published as a countdown message (fast path); later ones
# wait for the sweeper. Far below the Redis visibility timeout, so never redelivered.
COUNTDOWN_MAX_S = 60.0

_QUEUES = {STAMP_TASK: STAMP_QUEUE, NOTIFY_TASK: NOTIFY_QUEUE}
_WHAT = {STAMP_TASK: "invoice", NOTIFY_TASK: "notification"}


@dataclass(frozen=True)
class Ring:
    """One doorbell: the task to run for one row, optionally later or expiring."""

    task: str  # STAMP_TASK or NOTIFY_TASK
    row_id: str
    reference: str | None = None  # the ERP's reference, for people (Flower)
    countdown: float | None = None  # seconds; beyond COUNTDOWN_MAX_S the sweeper rings it
    expires: float | None = None  # seconds; an unrun message is dropped after that

    @property
    def label(self) -> str:
        text = f"{_WHAT.get(self.task, 'row')} {self.row_id[:8]}"
        return f"{text} ref {self.reference}" if self.reference else text


def stamp(invoice_id: str, *, reference: str | None = None, countdown: float | None = None,
          expires: float | None = None) -> Ring:
    return Ring(STAMP_TASK, invoice_id, reference, countdown, expires)


def notify(notification_id: str, *, reference: str | None = None,
           countdown: float | None = None, expires: float | None = None) -> Ring:
    return Ring(NOTIFY_TASK, notification_id, reference, countdown, expires)


def ring(app: Celery, bell: Ring) -> bool:
    """Publish one ring; False when it was left to the sweeper (logged, never raised)."""
    if bell.countdown is not None and bell.countdown > COUNTDOWN_MAX_S:
        return False  # due later than the fast path: the sweeper rings it when due
    try:
        app.send_task(bell.task, args=[bell.row_id], queue=_QUEUES.get(bell.task),
                      countdown=max(0.0, bell.countdown) if bell.countdown is not None else None,
                      expires=bell.expires, argsrepr=bell.label)
    except Exception as exc:
        log.warning("could not ring %s (%s); the sweeper will ring it", bell.label,
                    type(exc).__name__, extra={_id_key(bell): bell.row_id})
        return False
    return True


def ring_all(app: Celery, bells: Iterable[Ring]) -> int:
    """Ring each (after the caller's commit); returns how many were published."""
    return sum(ring(app, b) for b in bells)


class Bell(Protocol):
    """A producer's doorbell for one task: ``bell(row_id, reference=...)`` -> published?"""

    def __call__(self, row_id: str, *, reference: str | None = None) -> bool: ...


def bell_for(app: Celery, task: str) -> Bell:
    """The doorbell intake and operations call after each commit."""

    def bell(row_id: str, *, reference: str | None = None) -> bool:
        return ring(app, Ring(task, row_id, reference))

    return bell


def _id_key(bell: Ring) -> str:
    return "invoice_id" if bell.task == STAMP_TASK else "notification_id"


def waiting(app: Celery, queue: str) -> int | None:
    """How many doorbells wait in ``queue`` (ready, not yet taken by a worker), from the
    broker's own count (a passive declare: Redis LLEN, RabbitMQ's message count, files in
    the filesystem transport's folder; 0 for a queue the broker does not know, as Redis
    forgets an empty one); None when the broker cannot be reached (logged, never raised).
    The sweeper sets it against the rows that are due."""
    from kombu.exceptions import ChannelError

    try:
        with app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0)
            channel: Any = conn.default_channel  # (kombu's stubs: StdChannel has no queue_declare)
            try:
                return int(channel.queue_declare(queue=queue, passive=True).message_count)
            except ChannelError:  # no such queue (Redis drops an empty list): none waiting
                return 0
    except Exception as exc:
        log.warning("could not count the doorbells waiting in %s (%s)", queue, type(exc).__name__)
        return None

