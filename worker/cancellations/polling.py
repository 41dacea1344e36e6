"""SAT's answer to a cancellation: the beat asks ``get_sat_status`` until it is final.

``billing.poll_cancellations`` (maintenance queue, every ``min(cancel_poll_base_s, 60)``
seconds) takes, in one pass:

* ``in_process`` rows whose ``next_attempt_at`` is due: one ``get_sat_status`` each (and
  ``get_receipt`` while the row has no acuse). ``Cancelado`` → ``cancelled``; ``Solicitud
  rechazada`` → ``cancel_rejected``; anything else (``En proceso``, SAT not answering) →
  asked again after a doubling pause (``cancel_poll_base_s`` up to ``cancel_poll_max_s``):
  the receptor has 72 hours to answer, and SAT cancels it by itself after that.
* ``requested`` rows that are due and ``sending`` rows whose lease expired: their ids, for
  the caller to send (``worker.cancellations.sending``). That makes the poller the
  sweeper of cancellations: a lost doorbell or a killed worker only delays a request.

No lease: each poll's move is a compare-and-set on the state, so two pollers cannot both
settle a row; the loser's move changes nothing.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session, sessionmaker

from worker.cancellations.policy import judge_status, poll_delay_s
from worker.cancellations.sending import (
    CancelFinkok,
    Job,
    _call,
    _status_values,
    fetch_receipt,
)
from worker.db.lifecycle import due_where, move
from worker.db.models import Cancellation, StampAttempt, utcnow
from worker.db.states import CANCELLATION_CLAIM, CANCELLATION_EDGES, CANCELLATION_POLL
from worker.finkok.calls import Call
from worker.finkok.errors import FinkokError
from worker.settings import Settings

log = logging.getLogger(__name__)
E = CANCELLATION_EDGES
BATCH = 200


@dataclass(frozen=True)
class Due:
    to_send: list[str]
    to_poll: list[str]


def due(session: Session, now: datetime, *, limit: int = BATCH) -> Due:
    t = Cancellation.__table__
    send = session.scalars(select(t.c.id).where(due_where(Cancellation, CANCELLATION_CLAIM, now))  # type: ignore[arg-type]
                           .order_by(t.c.next_attempt_at).limit(limit)).all()
    poll = session.scalars(select(t.c.id).where(due_where(Cancellation, CANCELLATION_POLL, now))  # type: ignore[arg-type]
                           .order_by(t.c.next_attempt_at).limit(limit)).all()
    return Due(list(send), list(poll))


def poll_one(sessions: sessionmaker[Session], client: CancelFinkok, settings: Settings,
             cancellation_id: str, *, worker: str, rng: random.Random | None = None) -> str:
    """Ask SAT once about one in_process row; returns the state it is left in ("skipped":
    not in_process, or not due)."""
    now = utcnow()
    with sessions() as session:
        row = session.get(Cancellation, cancellation_id)
        if row is None or row.state != "in_process" or (
                row.next_attempt_at is not None and row.next_attempt_at > now):
            return "skipped"
        job = Job(row.id, row.invoice_id, row.sat_uuid, row.emisor_rfc, row.receptor_rfc, row.total,
                  row.motivo, row.folio_sustitucion, row.attempts, row.must_check)
        polls, has_acuse = row.polls, row.acuse is not None
    calls: list[Call] = []
    values: dict[str, Any] = {"polls": polls + 1, "updated_at": now}
    if not has_acuse:
        acuse, fecha = fetch_receipt(client, job, calls)
        if acuse is not None:
            values.update(acuse=acuse, acuse_fecha=fecha)
    settled = "none"
    try:
        status = _call(calls, "get_sat_status", client.get_sat_status, job.emisor_rfc,
                       job.receptor_rfc, job.uuid, job.total)
    except FinkokError as exc:
        values["errors"] = [{"code": type(exc).__name__, "message": str(exc)[:500], "kind": "transient"}]
    else:
        settled = judge_status(status)
        values.update(_status_values(status))
    if settled == "cancelled":
        edge = E["sat_cancelled"]
        values.update(cancelled_at=now, next_attempt_at=None, errors=None)
    elif settled == "rejected":
        edge = E["sat_rejected"]
        values.update(next_attempt_at=None, errors=[{
            "code": "rechazada", "message": "the receptor rejected the cancellation (Solicitud "
            "rechazada); the CFDI stays valid", "kind": "rejected"}])
    else:
        edge = E["sat_waiting"]
        delay = poll_delay_s(polls, base_s=settings.cancel_poll_base_s,
                             max_s=settings.cancel_poll_max_s, rng=rng)
        values["next_attempt_at"] = now + timedelta(seconds=delay)
    with sessions.begin() as session:
        if calls:
            session.execute(insert(StampAttempt.__table__), [
                {"invoice_id": job.invoice_id, "operation": c.operation, "started_at": c.started_at,
                 "duration_ms": c.duration_ms, "outcome": c.outcome, "codes": c.codes or None,
                 "message": c.message, "worker": worker} for c in calls])
        if not move(session, edge, cancellation_id, now=now, **values):
            return "skipped"
    if edge is not E["sat_waiting"]:
        log.info("cancellation %s -> %s", cancellation_id, edge.target,
                 extra={"invoice_id": job.invoice_id, "sat_uuid": job.uuid})
    return edge.target
