"""Invoices Finkok stamped but has not yet delivered to SAT: poll query_pending until F.

`S` means stamped by Finkok and still queued for SAT; `F` means delivered. The stamp (UUID
and XML) is already committed, so nothing here can lose it; polling only decides when the
invoice counts as settled (and, with sif_ok_at=sat, when SIF hears OK).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session, sessionmaker

from worker import doorbell
from worker.db.lifecycle import due_where, move, outbox
from worker.db.models import Invoice, StampAttempt, utcnow
from worker.db.states import INVOICE_EDGES, SAT_POLL, InvoiceState
from worker.doorbell import Ring
from worker.finkok.errors import FinkokError
from worker.settings import Settings

if TYPE_CHECKING:
    from worker.invoices.stamping import Finkok

log = logging.getLogger(__name__)

DELIVERED = "F"


@dataclass(frozen=True)
class PollOutcome:
    invoice_id: str
    state: str
    notification_ids: tuple[str, ...] = ()

    @property
    def follow_ups(self) -> tuple[Ring, ...]:
        return tuple(doorbell.notify(n) for n in self.notification_ids)


# Built once, executed with bind parameters (issue 15).
_DUE_PENDING = (
    select(Invoice.id)
    .where(due_where(Invoice, SAT_POLL, bindparam("now")))
    .order_by(Invoice.next_attempt_at)
    .limit(bindparam("limit"))
)


def due_pending(session: Session, now: datetime, limit: int = 100) -> list[str]:
    """Pending stamps whose next poll is due at ``now``, the longest-waiting first."""
    return list(session.scalars(_DUE_PENDING, {"now": now, "limit": limit}))


def poll_one(
    sessions: sessionmaker[Session], client: Finkok, settings: Settings, invoice_id: str, *,
    owner: str,
) -> PollOutcome:
    """Ask Finkok where one pending stamp is; ``sat_done`` moves it (and writes the OK when
    SIF hears at SAT), ``sat_waiting`` schedules the next poll. A CAS on the state: of two
    pollers, one moves it. ``owner`` names the poller in the attempt row."""
    with sessions() as session:
        sat_uuid = session.scalar(
            select(Invoice.sat_uuid).where(
                Invoice.id == invoice_id, Invoice.state.in_(sorted(SAT_POLL[0].sources))
            )
        )
    if sat_uuid is None:
        return PollOutcome(invoice_id, "skipped")

    started, t0 = utcnow(), time.perf_counter()
    status, outcome, message = None, "transient", None
    try:
        result = client.query_pending(sat_uuid)
        status = (result.status or "").upper() or None
        outcome = "delivered" if status == DELIVERED else "pending"
        message = result.error
    except FinkokError as exc:
        message = str(exc)[:500]
    attempt = StampAttempt(
        invoice_id=invoice_id, operation="query_pending", started_at=started,
        duration_ms=int((time.perf_counter() - t0) * 1000), outcome=outcome,
        codes=[status] if status else None, message=message, worker=owner,
    )

    now = utcnow()
    with sessions.begin() as session:
        session.add(attempt)
        if status == DELIVERED:
            # Compare-and-set: of two pollers, one moves it and writes the outbox row.
            if move(session, INVOICE_EDGES["sat_done"], invoice_id, now=now,
                    sat_status=DELIVERED, next_attempt_at=None, updated_at=now):
                ids: tuple[str, ...] = ()
                if settings.sif_ok_at == "sat":
                    ids = (outbox(session, invoice_id, "OK", now=now),)
                log.info("invoice %s delivered to SAT", invoice_id,
                         extra={"invoice_id": invoice_id, "sat_uuid": sat_uuid})
                return PollOutcome(invoice_id, InvoiceState.STAMPED, ids)
            return PollOutcome(invoice_id, "skipped")
        move(
            session, INVOICE_EDGES["sat_waiting"], invoice_id, now=now, sat_status=status,
            next_attempt_at=now + timedelta(seconds=settings.pending_poll_interval_s),
        )
        return PollOutcome(invoice_id, InvoiceState.PENDING)
