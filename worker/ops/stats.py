"""The numbers an operator checks first, straight from the record (not from Flower).

Counts per state, the oldest row of each state that should move on its own (how long
it has been stuck), Finkok calls and their failure codes over a window, SIF answers by
status code over the window, and stamps per minute over the last 1/5/15 minutes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from worker.db.breakers import scope_of_key
from worker.db.models import (
    Breaker,
    Cancellation,
    DeliveryAttempt,
    Invoice,
    Notification,
    StampAttempt,
    utcnow,
)
from worker.db.states import CancellationState, InvoiceState, NotificationState

# States a row leaves by itself; one that stays long in them is worth a look.
MOVING_INVOICE_STATES = (InvoiceState.RECEIVED, InvoiceState.STAMPING, InvoiceState.RETRY_WAIT,
                         InvoiceState.PENDING, InvoiceState.HELD)
MOVING_NOTIFICATION_STATES = (NotificationState.QUEUED, NotificationState.SENDING,
                              NotificationState.RETRY_WAIT, NotificationState.HELD)
MOVING_CANCELLATION_STATES = (CancellationState.REQUESTED, CancellationState.SENDING,
                              CancellationState.IN_PROCESS, CancellationState.HELD)
# Finkok outcomes that are answers, not failures (603 to `stamped` is the all-clear).
FINKOK_NOT_FAILURES = frozenset({"success", "ok", "already_stamped", "not_stamped", "pending",
                                 "delivered"})
THROUGHPUT_MINUTES = (1, 5, 15)
NO_ANSWER = "no answer"


@dataclass(frozen=True)
class Oldest:
    id: str
    since: datetime
    age_s: float


@dataclass
class Stats:
    now: datetime
    window_s: float
    invoices: dict[str, int]
    notifications: dict[str, int]
    oldest_invoice: dict[str, Oldest | None]
    oldest_notification: dict[str, Oldest | None]
    finkok_calls: int = 0
    finkok_failures: int = 0
    finkok_by_outcome: dict[str, int] = field(default_factory=dict)
    finkok_avg_ms: dict[str, float] = field(default_factory=dict)  # per operation
    finkok_top_codes: list[tuple[str, int]] = field(default_factory=list)
    sif_deliveries: int = 0
    sif_by_status: dict[str, int] = field(default_factory=dict)
    stamped_per_min: dict[str, float] = field(default_factory=dict)  # "1m" -> stamps/min
    # Breakers that are not closed, with what they hold: one line per cause.
    breakers: list[dict[str, Any]] = field(default_factory=list)
    cancellations: dict[str, int] = field(default_factory=dict)  # SAT cancellations by state

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["finkok_top_codes"] = [{"code": c, "count": n} for c, n in self.finkok_top_codes]
        return out


def _counts(session: Session, column: Any, states: list[str]) -> dict[str, int]:
    found: dict[Any, int] = {
        k: int(v) for k, v in session.execute(select(column, func.count()).group_by(column))
    }
    return {s: int(found.get(s, 0)) for s in states} | {
        str(k): int(v) for k, v in found.items() if k not in states
    }


def _oldest(session: Session, model: Any, state: str, now: datetime) -> Oldest | None:
    row = session.execute(
        select(model.id, model.state_changed_at).where(model.state == state)
        .order_by(model.state_changed_at, model.id).limit(1)
    ).first()
    if row is None:
        return None
    return Oldest(row.id, row.state_changed_at, max(0.0, (now - row.state_changed_at).total_seconds()))


def compute_stats(session: Session, *, window_s: float = 3600.0, now: datetime | None = None,
                  top: int = 10) -> Stats:
    now = now or utcnow()
    since = now - timedelta(seconds=window_s)
    stats = Stats(
        now=now,
        window_s=window_s,
        invoices=_counts(session, Invoice.state, [str(s) for s in InvoiceState]),
        notifications=_counts(session, Notification.state, [str(s) for s in NotificationState]),
        oldest_invoice={str(s): _oldest(session, Invoice, s, now) for s in MOVING_INVOICE_STATES},
        oldest_notification={
            str(s): _oldest(session, Notification, s, now) for s in MOVING_NOTIFICATION_STATES
        },
    )
    _finkok(session, stats, since, top)
    _sif(session, stats, since)
    stats.breakers = held_by_cause(session)
    stats.cancellations = _counts(session, Cancellation.state, [str(s) for s in CancellationState])
    for minutes in THROUGHPUT_MINUTES:
        n = session.scalar(select(func.count()).select_from(Invoice).where(
            Invoice.stamped_at >= now - timedelta(minutes=minutes), Invoice.stamped_at <= now))
        stats.stamped_per_min[f"{minutes}m"] = round(int(n or 0) / minutes, 3)
    return stats


def held_by_cause(session: Session) -> list[dict[str, Any]]:
    """Each breaker that is not closed (or still holds rows), its cause and what it holds."""
    held_invoices = dict(session.execute(
        select(Invoice.hold_key, func.count()).where(Invoice.state == InvoiceState.HELD)
        .group_by(Invoice.hold_key)).all())
    held_notes = dict(session.execute(
        select(Notification.hold_key, func.count())
        .where(Notification.state == NotificationState.HELD)
        .group_by(Notification.hold_key)).all())
    held_cancels = dict(session.execute(
        select(Cancellation.hold_key, func.count())
        .where(Cancellation.state == CancellationState.HELD)
        .group_by(Cancellation.hold_key)).all())
    rows = {b.key: b for b in session.scalars(select(Breaker))}
    keys = sorted({*(k for k, b in rows.items() if b.state != "closed"),
                   *(k for k in (*held_invoices, *held_notes, *held_cancels) if k)})
    return [{
        "key": key, "scope": scope_of_key(key),
        "state": rows[key].state if key in rows else "closed",
        "cause": rows[key].cause if key in rows else None,
        "since": rows[key].opened_at if key in rows else None,
        "held_invoices": int(held_invoices.get(key, 0)),
        "held_notifications": int(held_notes.get(key, 0)),
        "held_cancellations": int(held_cancels.get(key, 0)),
    } for key in keys]


def _finkok(session: Session, stats: Stats, since: datetime, top: int) -> None:
    in_window = (StampAttempt.started_at >= since, StampAttempt.started_at <= stats.now)
    by_outcome = session.execute(
        select(StampAttempt.outcome, func.count()).where(*in_window).group_by(StampAttempt.outcome)
    ).all()
    stats.finkok_by_outcome = {str(o): int(n) for o, n in sorted(by_outcome)}
    stats.finkok_calls = sum(stats.finkok_by_outcome.values())
    stats.finkok_failures = sum(
        n for o, n in stats.finkok_by_outcome.items() if o not in FINKOK_NOT_FAILURES
    )
    avg = session.execute(
        select(StampAttempt.operation, func.avg(StampAttempt.duration_ms))
        .where(*in_window).group_by(StampAttempt.operation)
    ).all()
    stats.finkok_avg_ms = {str(op): round(float(ms or 0), 1) for op, ms in sorted(avg)}
    codes: Counter[str] = Counter()
    for row_codes in session.scalars(
        select(StampAttempt.codes).where(
            *in_window, StampAttempt.outcome.not_in(FINKOK_NOT_FAILURES)
        )
    ):
        codes.update(str(c) for c in (row_codes or []))
    stats.finkok_top_codes = sorted(codes.items(), key=lambda kv: (-kv[1], kv[0]))[:top]


def _sif(session: Session, stats: Stats, since: datetime) -> None:
    rows = session.execute(
        select(DeliveryAttempt.status_code, func.count())
        .where(DeliveryAttempt.started_at >= since, DeliveryAttempt.started_at <= stats.now)
        .group_by(DeliveryAttempt.status_code)
    ).all()
    by_status = {(NO_ANSWER if code is None else str(code)): int(n) for code, n in rows}
    stats.sif_by_status = dict(sorted(by_status.items()))
    stats.sif_deliveries = sum(by_status.values())
