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
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, not_, or_, select, update
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


def due_invoices(
    session: Session, now: datetime, *, grace_s: float, limit: int = 500,
    where: ColumnElement[bool] | None = None,
) -> list[str]:
    """Invoices a worker's claim would take now (``due_where`` over the claim edges: due
    received/retry_wait rows, stamping rows whose lease expired), except received rows
    younger than the grace (intake rang those itself); ``where`` narrows them."""
    just_received = and_(Invoice.state == InvoiceState.RECEIVED,
                         Invoice.next_attempt_at > now - timedelta(seconds=grace_s))
    stmt = (
        select(Invoice.id)
        .where(due_where(Invoice, INVOICE_CLAIM, now), not_(just_received))
        .order_by(Invoice.next_attempt_at)
        .limit(limit)
    )
    if where is not None:
        stmt = stmt.where(where)
    return list(session.scalars(stmt))


def due_notifications(
    session: Session, now: datetime, limit: int = 100, *, where: ColumnElement[bool] | None = None
) -> list[str]:
    """Notifications a worker's claim would take at ``now`` (queued/retry_wait due, or
    sending whose lease expired: the worker died between claim and settle)."""
    now = as_utc(now)
    stmt = (
        select(Notification.id)
        .where(due_where(Notification, NOTIFICATION_CLAIM, now))
        .order_by(Notification.next_attempt_at.asc().nulls_first(), Notification.created_at)
        .limit(limit)
    )
    if where is not None:
        stmt = stmt.where(where)
    return list(session.scalars(stmt))


def ring_due(
    session: Session, now: datetime, *, grace_s: float, rering_after_s: float, limit: int = 500
) -> Due:
    """The due rows not rung within ``rering_after_s``, marked as rung now (the caller
    commits, then publishes)."""
    cutoff = now - timedelta(seconds=rering_after_s)
    invoices = due_invoices(session, now, grace_s=grace_s, limit=limit,
                            where=_not_rung(Invoice, cutoff))
    # The grace keeps the sweeper from doubling the doorbell a task has just rung.
    notifications = due_notifications(session, now - timedelta(seconds=grace_s), limit,
                                      where=_not_rung(Notification, cutoff))
    _mark_rung(session, Invoice, invoices, now)
    _mark_rung(session, Notification, notifications, now)
    return Due(invoices, notifications)


def _not_rung(
    model: type[Invoice] | type[Notification], cutoff: datetime
) -> ColumnElement[bool]:
    return or_(model.rung_at.is_(None), model.rung_at <= cutoff)


def _mark_rung(
    session: Session, model: type[Invoice] | type[Notification], ids: list[str], now: datetime
) -> None:
    # The rows were chosen by a query that already left out the recently rung ones: a
    # backlog sitting in the queue costs one indexed SELECT per sweep, not an IN of 500.
    if ids:
        session.execute(update(model).where(model.id.in_(ids)).values(rung_at=now)
                        .execution_options(synchronize_session=False))
