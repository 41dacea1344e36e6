"""The sweeper: find rows that are due and ring their doorbell again.

Messages get lost (SIGKILL on the embedded transports, a broker restart, a publish that
failed after commit) and leases expire (a worker died mid-call). The database knows
which rows are due; the sweeper re-publishes them. Duplicates are harmless (every task
claims its row with a compare-and-set first) but not free: a row the sweeper rang is not
rung again for ``rering_after_s``, so a backlog waiting in the queue is not multiplied
on every sweep (found by the chaos run: 13,000 stale doorbells).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, and_, bindparam, func, not_, or_, select, update
from sqlalchemy.orm import Session

from worker import doorbell
from worker.db.lifecycle import due_where
from worker.db.models import Invoice, Notification, as_utc
from worker.db.states import INVOICE_CLAIM, NOTIFICATION_CLAIM, InvoiceState
from worker.doorbell import Ring


@dataclass(frozen=True)
class Due:
    invoices: list[str]
    notifications: list[str]

    def follow_ups(self, *, expires: float) -> tuple[Ring, ...]:
        """A swept doorbell still waiting in the queue at the next re-ring is dropped unrun."""
        return (*(doorbell.stamp(i, expires=expires) for i in self.invoices),
                *(doorbell.notify(n, expires=expires) for n in self.notifications))


def _rung_before(model: type[Invoice] | type[Notification]) -> ColumnElement[bool]:
    """Not rung since the ``rung_before`` bind parameter (never rung counts)."""
    return or_(model.rung_at.is_(None), model.rung_at <= bindparam("rung_before"))


# Built once, executed with bind parameters (issue 15): ``now``, ``received_before`` (the
# grace: intake rang younger received rows itself), ``rung_before`` and ``limit``.
_INVOICE_DUE = and_(due_where(Invoice, INVOICE_CLAIM, bindparam("now")),
                    not_(and_(Invoice.state == InvoiceState.RECEIVED,
                              Invoice.next_attempt_at > bindparam("received_before"))))
_NOTIFICATION_DUE = due_where(Notification, NOTIFICATION_CLAIM, bindparam("now"))
_DUE_INVOICES = (
    select(Invoice.id)
    .where(_INVOICE_DUE, _rung_before(Invoice))
    .order_by(Invoice.next_attempt_at)
    .limit(bindparam("limit"))
)
_DUE_NOTIFICATIONS = (
    select(Notification.id)
    .where(_NOTIFICATION_DUE, _rung_before(Notification))
    .order_by(Notification.next_attempt_at.asc().nulls_first(), Notification.created_at)
    .limit(bindparam("limit"))
)
# Every due row, rung lately or not: set against the doorbells still waiting in the queue.
_COUNT_DUE_INVOICES = select(func.count()).select_from(Invoice).where(_INVOICE_DUE)
_COUNT_DUE_NOTIFICATIONS = select(func.count()).select_from(Notification).where(_NOTIFICATION_DUE)
_NEVER = datetime(9999, 1, 1, tzinfo=UTC)  # "rung before the end of time": any row


def due_invoices(
    session: Session, now: datetime, *, grace_s: float, limit: int = 500,
    rung_before: datetime = _NEVER,
) -> list[str]:
    """Invoices a worker's claim would take now (``due_where`` over the claim edges: due
    received/retry_wait rows, stamping rows whose lease expired), except received rows
    younger than the grace (intake rang those itself) and rows rung after ``rung_before``."""
    return list(session.scalars(_DUE_INVOICES, {
        "now": now, "received_before": now - timedelta(seconds=grace_s),
        "rung_before": rung_before, "limit": limit}))


def due_notifications(
    session: Session, now: datetime, limit: int = 100, *, rung_before: datetime = _NEVER,
) -> list[str]:
    """Notifications a worker's claim would take at ``now`` (queued/retry_wait due, or
    sending whose lease expired: the worker died between claim and settle), except those
    rung after ``rung_before``."""
    return list(session.scalars(_DUE_NOTIFICATIONS, {"now": as_utc(now), "rung_before": rung_before,
                                       "limit": limit}))


def ring_due(
    session: Session, now: datetime, *, grace_s: float, rering_after_s: float, limit: int = 500,
    queued: tuple[int | None, int | None] = (None, None),
) -> Due:
    """The due rows not rung within ``rering_after_s``, marked as rung now (the caller
    commits, then publishes).

    ``queued``: the doorbells waiting in the stamp and notify queues (None: unknown). A
    backlog older than ``rering_after_s`` is not rung again while the queue holds at least
    as many doorbells as there are due rows: each may be waiting its turn (measured: 10,000
    invoices enqueued at once were rung ~twice each, and the workers' memory grew with
    the duplicates). When due rows outnumber the queued doorbells, at least that many have
    none (a message lost): the oldest of them are rung, and a lost doorbell's row, left
    behind while the queue drains, becomes the oldest."""
    cutoff = now - timedelta(seconds=rering_after_s)
    invoices = due_invoices(session, now, grace_s=grace_s, limit=limit, rung_before=cutoff)
    # The grace keeps the sweeper from doubling the doorbell a task has just rung.
    notifications = due_notifications(session, now - timedelta(seconds=grace_s), limit,
                                      rung_before=cutoff)
    waiting_invoices, waiting_notifications = queued
    if waiting_invoices and invoices:
        due = session.scalar(_COUNT_DUE_INVOICES, {
            "now": now, "received_before": now - timedelta(seconds=grace_s)}) or 0
        invoices = invoices[:max(0, due - waiting_invoices)]
    if waiting_notifications and notifications:
        due = session.scalar(_COUNT_DUE_NOTIFICATIONS,
                             {"now": as_utc(now - timedelta(seconds=grace_s))}) or 0
        notifications = notifications[:max(0, due - waiting_notifications)]
    _mark_rung(session, Invoice, invoices, now)
    _mark_rung(session, Notification, notifications, now)
    return Due(invoices, notifications)


def _mark_rung(
    session: Session, model: type[Invoice] | type[Notification], ids: list[str], now: datetime
) -> None:
    # The rows were chosen by a query that already left out the recently rung ones: a
    # backlog sitting in the queue costs one indexed SELECT per sweep, not an IN of 500.
    if ids:
        session.execute(update(model).where(model.id.in_(ids)).values(rung_at=now)
                        .execution_options(synchronize_session=False))
