"""Operations: put a SIF notification back in the outbox, audited (``resend``).

The delivery itself is ``worker.invoices.notify.deliver``; this only moves a delivered
or failed row back to ``queued`` (the ``resend`` edge) with its AuditLog row. Its audit
time also restarts the row's transient-failure budget (``notify._transient_failures``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from worker.db import breakers
from worker.db.lifecycle import move
from worker.db.models import AuditLog, Notification, as_utc
from worker.db.states import NOTIFICATION_EDGES, NotificationState
from worker.invoices.notify import RESEND_ACTION


class ResendError(ValueError):
    """The notification (or invoice) cannot be resent now."""


def _resolve(session: Session, target_id: str) -> Notification:
    """A notification id, or an invoice id (its most recent notification)."""
    notification = session.get(Notification, target_id)
    if notification is not None:
        return notification
    notification = session.scalars(
        select(Notification)
        .where(Notification.invoice_id == target_id)
        .order_by(Notification.created_at.desc())
        .limit(1)
    ).first()
    if notification is None:
        raise ResendError(f"{target_id}: no notification, and no invoice with a notification")
    return notification


def enqueue_resend(
    session: Session,
    target_id: str,
    *,
    actor: str,
    reason: str,
    now: datetime | None = None,
) -> str:
    """Operations: put a delivered or failed notification back in the queue, audited.

    ``target_id`` is a notification id or an invoice id (its latest notification). The
    caller commits (and then rings the doorbell). Returns the notification id.
    """
    now = as_utc(now)
    if not actor.strip() or not reason.strip():
        raise ResendError("a resend needs an actor and a reason")
    notification = _resolve(session, target_id)
    previous_state, previous_result = notification.state, notification.result
    moved = move(
        session, NOTIFICATION_EDGES["resend"], notification.id, now=now,
        next_attempt_at=now, first_404_at=None, result=None,
    )
    if moved and previous_state == NotificationState.HELD and notification.hold_key:
        # The operator says the target is fixed: close its breaker, so the other rows held
        # on it resume too (a 401 again re-opens it at once).
        breakers.succeeded(session, (notification.hold_key,), now=now, actor=actor,
                           reason=f"resend: {reason}")
    if not moved:
        raise ResendError(
            f"notification {notification.id} is {previous_state}: only delivered, failed or "
            "held notifications can be resent"
        )
    session.add(
        AuditLog(
            at=now, actor=actor, action=RESEND_ACTION, invoice_id=notification.invoice_id,
            notification_id=notification.id, reason=reason,
            details={"from_state": previous_state, "previous_result": previous_result},
        )
    )
    return notification.id
