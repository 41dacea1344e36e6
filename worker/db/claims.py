"""Compare-and-set transitions and leased claims, the same SQL on SQLite and PostgreSQL.

A claim is one UPDATE that succeeds for exactly one caller:

    UPDATE invoices SET state='stamping', lease_owner=:me, lease_expires_at=:t, attempts+1
     WHERE id=:id AND ((state IN ('received','retry_wait') AND next_attempt_at <= :now)
                       OR (state='stamping' AND lease_expires_at < :now))

rowcount 1 means the row is ours until the lease expires; 0 means someone else has it,
it is not due, or it is settled. Completing is fenced by the lease owner, so a worker
whose lease was taken over cannot overwrite the newer worker's outcome.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Row, Update, and_, case, or_, true, update
from sqlalchemy.orm import Session

from worker.db.models import Invoice, Notification, utcnow
from worker.invoices.states import (
    InvoiceState,
    NotificationState,
    invoice_sources,
    notification_sources,
)

Model = type[Invoice] | type[Notification]


def _claim_statement(
    model: Model,
    row_id: str,
    *,
    working_state: str,
    waiting_states: tuple[str, ...],
    owner: str,
    lease_s: float,
    now: datetime | None,
) -> Update:
    now = now or utcnow()
    c = model.__table__.c  # Core columns: one statement, no ORM bookkeeping on the hot path
    return (
        update(model.__table__)
        .where(c.id == row_id)
        .where(
            or_(
                and_(
                    c.state.in_(waiting_states),
                    or_(c.next_attempt_at.is_(None), c.next_attempt_at <= now),
                ),
                # The previous holder died (or hung past its lease): take over.
                and_(c.state == working_state, c.lease_expires_at < now),
            )
        )
        .values(
            state=working_state,
            state_changed_at=now,
            lease_owner=owner,
            lease_expires_at=now + timedelta(seconds=lease_s),
            attempts=c.attempts + 1,
        )
    )


def _claim(session: Session, model: Model, row_id: str, **how: Any) -> bool:
    return session.connection().execute(_claim_statement(model, row_id, **how)).rowcount == 1


_INVOICE_CLAIM: dict[str, Any] = {
    "working_state": InvoiceState.STAMPING,
    "waiting_states": (InvoiceState.RECEIVED, InvoiceState.RETRY_WAIT),
}


def claim_invoice(
    session: Session, invoice_id: str, *, owner: str, lease_s: float, now: datetime | None = None
) -> bool:
    """received|retry_wait (due) or stamping (lease expired) -> stamping, leased to owner."""
    return _claim(session, Invoice, invoice_id, **_INVOICE_CLAIM, owner=owner, lease_s=lease_s,
                  now=now)


def claim_invoice_for_stamp(
    session: Session, invoice_id: str, *, owner: str, lease_s: float, now: datetime | None = None
) -> Row[Any] | None:
    """``claim_invoice`` that also returns what the stamp needs, in the same statement:
    the stored XML, attempts (this claim counted), the ids for the log, and whether a
    stamp call may already have gone out for these bytes (``must_check_stamped``).

    Taking over a ``stamping`` row sets ``must_check_stamped``: the previous holder died
    or hung mid-call, and its stamp may exist. (SET reads the row as it was before the
    UPDATE, on SQLite and PostgreSQL alike.) No row: not ours to stamp now.
    """
    t = Invoice.__table__
    stmt = (
        _claim_statement(Invoice, invoice_id, **_INVOICE_CLAIM, owner=owner, lease_s=lease_s,
                         now=now)
        .values(must_check_stamped=case((t.c.state == InvoiceState.STAMPING, true()),
                                        else_=t.c.must_check_stamped))
        .returning(t.c.xml, t.c.attempts, t.c.must_check_stamped, t.c.reference,
                   t.c.empresa_ref_id)
    )
    return session.connection().execute(stmt).first()


def claim_notification(
    session: Session,
    notification_id: str,
    *,
    owner: str,
    lease_s: float,
    now: datetime | None = None,
) -> bool:
    """queued|retry_wait (due) or sending (lease expired) -> sending, leased to owner."""
    return _claim(
        session,
        Notification,
        notification_id,
        working_state=NotificationState.SENDING,
        waiting_states=(NotificationState.QUEUED, NotificationState.RETRY_WAIT),
        owner=owner,
        lease_s=lease_s,
        now=now,
    )


def _transition(
    session: Session,
    model: Model,
    row_id: str,
    to: str,
    allowed_from: tuple[str, ...],
    owner: str | None,
    now: datetime | None,
    values: dict[str, Any],
    unless: ColumnElement[bool] | None = None,
) -> bool:
    now = now or utcnow()
    c = model.__table__.c
    stmt = update(model.__table__).where(c.id == row_id, c.state.in_(allowed_from))
    if owner is not None:
        stmt = stmt.where(c.lease_owner == owner)
    if unless is not None:
        stmt = stmt.where(~unless)
    stmt = stmt.values(
        state=to, state_changed_at=now, lease_owner=None, lease_expires_at=None, **values
    )
    return session.execute(stmt).rowcount == 1


def transition_invoice(
    session: Session,
    invoice_id: str,
    to: InvoiceState,
    *,
    owner: str | None = None,
    now: datetime | None = None,
    unless: ColumnElement[bool] | None = None,
    **values: Any,
) -> bool:
    """Move an invoice to ``to`` if the transition table allows it from its current state.

    With ``owner`` the update is fenced: it applies only while that worker holds the lease.
    With ``unless``, it applies only while that condition is false. Returns False (and
    changes nothing) otherwise. The lease is released.
    """
    return _transition(
        session, Invoice, invoice_id, to, invoice_sources(to), owner, now, values, unless
    )


def transition_notification(
    session: Session,
    notification_id: str,
    to: NotificationState,
    *,
    owner: str | None = None,
    now: datetime | None = None,
    **values: Any,
) -> bool:
    """Same as transition_invoice, for outbox notifications."""
    return _transition(
        session, Notification, notification_id, to, notification_sources(to), owner, now, values
    )
