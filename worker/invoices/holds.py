"""Held rows: what the sweeper does for invoices, notifications and cancellations waiting on
a breaker.

Each sweep, in one short transaction:

0. **expire**: see 3 (first, so a row whose window is closing is never made a probe);
1. **probe**: every open breaker whose probe is due turns half-open, and the oldest row
   held on it is released, so one real call tests the scope (``worker.db.breakers``): an
   invoice, or when no invoice waits on it, a SAT cancellation (``worker.cancellations``);
2. **release**: rows held on a breaker that is closed again (or was reset) go back to
   waiting, at most ``hold_release_per_sweep`` per sweep and kind, oldest first: no
   thundering herd;
3. **expire**: an invoice still held when SAT's 72-hour window is about to close (its
   deadline less ``sat_window_margin_s``) fails with a NOK that says exactly that, unless
   a stamp call for it went unanswered (``must_check_stamped``: it may be stamped; the
   pipeline asks ``stamped`` first when it resumes).

The caller commits, then rings the returned follow-ups.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from worker import doorbell
from worker.db import breakers
from worker.db.lifecycle import move, outbox
from worker.db.models import Breaker, Cancellation, Invoice, Notification
from worker.db.states import (
    CANCELLATION_EDGES,
    INVOICE_EDGES,
    NOTIFICATION_EDGES,
    CancellationState,
    Edge,
    InvoiceState,
    NotificationState,
)
from worker.doorbell import Ring
from worker.invoices.notify import target_fingerprints
from worker.invoices.policy import window_closed
from worker.settings import Settings

log = logging.getLogger(__name__)

Held = type[Invoice] | type[Notification] | type[Cancellation]
HELD_STATE: dict[Held, str] = {Invoice: InvoiceState.HELD, Notification: NotificationState.HELD,
                               Cancellation: CancellationState.HELD}


@dataclass
class Maintenance:
    probes: list[str] = field(default_factory=list)  # breaker keys half-opened
    released: list[str] = field(default_factory=list)  # invoice ids
    released_notifications: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)  # invoice ids failed at the window
    notifications: list[str] = field(default_factory=list)  # NOKs written
    released_cancellations: list[str] = field(default_factory=list)

    @property
    def follow_ups(self) -> tuple[Ring, ...]:
        from worker.cancellations.tasks import SEND_CANCEL_TASK

        return (*(doorbell.stamp(i) for i in self.released),
                *(doorbell.notify(n) for n in (*self.released_notifications,
                                               *self.notifications)),
                *(Ring(SEND_CANCEL_TASK, c) for c in self.released_cancellations))


def maintain(session: Session, settings: Settings, now: datetime) -> Maintenance:
    done = Maintenance()
    _expire(session, settings, now, done)  # first: a row whose window closes is no probe
    _close_changed_sif_targets(session, settings, now)
    done.probes = breakers.due_probes(session, now)
    for key in done.probes:  # one held row per half-open breaker becomes its probe
        if not _release(session, Invoice, INVOICE_EDGES["release"], key, 1, now, done.released):
            _release(session, Cancellation, CANCELLATION_EDGES["release"], key, 1, now,
                     done.released_cancellations)
        _release(session, Notification, NOTIFICATION_EDGES["release"], key, 1, now,
                 done.released_notifications)
    budget = settings.hold_release_per_sweep
    _release(session, Invoice, INVOICE_EDGES["release"], None, budget - len(done.released), now,
             done.released)
    _release(session, Notification, NOTIFICATION_EDGES["release"], None, budget, now,
             done.released_notifications)
    _release(session, Cancellation, CANCELLATION_EDGES["release"], None,
             budget - len(done.released_cancellations), now, done.released_cancellations)
    if done.released or done.released_notifications or done.released_cancellations or done.expired:
        log.info("holds: released %d invoices, %d notifications and %d cancellations, %d failed "
                 "at SAT's window", len(done.released), len(done.released_notifications),
                 len(done.released_cancellations), len(done.expired))
    return done


def _release(session: Session, model: Held, edge: Edge, key: str | None, limit: int,
             now: datetime, into: list[str]) -> int:
    """Held rows on ``key`` (a probe), or on any breaker that is closed again, back to
    waiting (a cancellation: ``requested``); returns how many moved."""
    if limit <= 0:
        return 0
    stmt = select(model.id).where(model.state == HELD_STATE[model])
    if key is not None:
        stmt = stmt.where(model.hold_key == key)
    else:
        stmt = stmt.where(~breakers.open_keys_where(model.hold_key))
    moved = 0
    for row_id in session.scalars(stmt.order_by(model.state_changed_at).limit(limit)):
        if move(session, edge, row_id, now=now, next_attempt_at=now, hold_key=None, rung_at=now):
            into.append(row_id)
            moved += 1
    return moved


def _close_changed_sif_targets(session: Session, settings: Settings, now: datetime) -> None:
    """A SIF target whose breaker a 401 opened resumes once its settings changed."""
    current = target_fingerprints(settings)
    for breaker in breakers.not_closed(session):
        if (breaker.key in current and breaker.fingerprint is not None
                and breaker.fingerprint != current[breaker.key]):
            breakers.succeeded(session, (breaker.key,), now=now,
                               reason="the SIF target's settings changed")


def _expire(session: Session, settings: Settings, now: datetime, done: Maintenance) -> None:
    margin = timedelta(seconds=settings.sat_window_margin_s)
    rows = session.execute(
        select(Invoice.id, Invoice.hold_key).where(
            Invoice.state == InvoiceState.HELD, Invoice.must_check_stamped.is_(False),
            Invoice.stamp_deadline_at <= now + margin)
        .order_by(Invoice.stamp_deadline_at).limit(500)
    ).all()
    for row_id, key in rows:
        breaker = session.get(Breaker, key) if key else None
        refused = window_closed(cause=f"held: {breaker.cause if breaker and breaker.cause else key}")
        if move(session, INVOICE_EDGES["expire"], row_id, now=now, updated_at=now,
                errors=refused.errors, error_kind="window", hold_key=None,
                next_attempt_at=None):
            done.expired.append(row_id)
            done.notifications.append(outbox(session, row_id, "NOK", now=now))
            log.error("invoice %s failed: SAT's 72-hour window closed while held on %s",
                      row_id, key, extra={"invoice_id": row_id})
