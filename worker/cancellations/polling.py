"""SAT's answer to a cancellation: the beat asks ``get_sat_status`` until it is final.

``billing.poll_cancellations`` (maintenance queue, every ``min(cancel_poll_base_s, 60)``
seconds) takes, in one pass:

* ``in_process`` rows whose ``next_attempt_at`` is due: one ``get_sat_status`` each (and
  ``get_receipt`` while the row has no acuse). ``Cancelado`` → ``cancelled``; ``Solicitud
  rechazada`` → ``cancel_rejected``; anything else (``En proceso``, SAT not answering) →
  asked again after a doubling pause (``cancel_poll_base_s`` up to ``cancel_poll_max_s``):
  the receptor has 72 hours to answer, and SAT cancels it by itself after that.
* **An outage is never an answer.** While a Finkok breaker of the row's scope is open, no
  call is made for it (it waits its pause again). A lookup that fails (timeout, dropped
  connection, 5xx, a proxy's 404) or names our account or the emisor's setup counts on the
  breakers like a send does, and the row stays ``in_process``: never a failure, never a
  final state.
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

from worker.cancellations.policy import (
    Again,
    Hold,
    SatSays,
    judge_failure,
    judge_lookup_error,
    judge_status,
    poll_delay_s,
    status_values,
)
from worker.cancellations.sending import CancelFinkok, Job, _call, ask_receipt, note_outage
from worker.db import breakers
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
    not in_process, or not due). An outage never settles it: while a breaker of its scope
    is open no call is made, and a failed or account-refused lookup counts on the breakers
    like any other call; either way the row stays in_process and is asked again later,
    after its doubling pause."""
    now = utcnow()
    with sessions() as session:
        row = session.get(Cancellation, cancellation_id)
        if row is None or row.state != "in_process" or (
                row.next_attempt_at is not None and row.next_attempt_at > now):
            return "skipped"
        job = Job(row.id, row.invoice_id, row.sat_uuid, row.emisor_rfc, row.receptor_rfc, row.total,
                  row.motivo, row.folio_sustitucion, row.attempts, row.must_check)
        polls, has_acuse = row.polls, row.acuse is not None
        blocked = breakers.first_not_closed(session, job.breaker_keys)
    calls: list[Call] = []
    values: dict[str, Any] = {"updated_at": now}
    outage: Again | Hold | None = None
    settled: SatSays = "none"
    if blocked is None:
        values["polls"] = polls + 1
        settled, outage = _ask(client, job, calls, values, has_acuse=has_acuse)
    if settled == "cancelled":
        edge = E["sat_cancelled"]
        values.update(cancelled_at=now, next_attempt_at=None, errors=None)
    elif settled == "rejected":
        edge = E["sat_rejected"]
        values.update(next_attempt_at=None, errors=[{
            "code": "rechazada", "message": "the receptor rejected the cancellation (Solicitud "
            "rechazada); the CFDI stays valid", "kind": "rejected"}])
    else:  # En proceso, nothing yet, an outage, or a breaker open: ask again later
        edge = E["sat_waiting"]
        delay = poll_delay_s(polls, base_s=settings.cancel_poll_base_s,
                             max_s=settings.cancel_poll_max_s, rng=rng)
        values["next_attempt_at"] = now + timedelta(seconds=delay)
        if outage is not None:
            values["errors"] = outage.errors
    with sessions.begin() as session:
        if calls:
            session.execute(insert(StampAttempt.__table__), [
                {"invoice_id": job.invoice_id, "operation": c.operation, "started_at": c.started_at,
                 "duration_ms": c.duration_ms, "outcome": c.outcome, "codes": c.codes or None,
                 "message": c.message, "worker": worker} for c in calls])
        if outage is not None:
            note_outage(session, outage, settings=settings, now=now)
        if not move(session, edge, cancellation_id, now=now, **values):
            return "skipped"
    if edge is not E["sat_waiting"]:
        log.info("cancellation %s -> %s", cancellation_id, edge.target,
                 extra={"invoice_id": job.invoice_id, "sat_uuid": job.uuid})
    return edge.target


def _ask(client: CancelFinkok, job: Job, calls: list[Call], values: dict[str, Any], *,
         has_acuse: bool) -> tuple[SatSays, Again | Hold | None]:
    """The poll's calls: ``get_receipt`` while the row has no acuse, then ``get_sat_status``.
    Returns SAT's word and the outage that stopped the poll, if any (nothing more is asked
    after one); puts the acuse and SAT's words in ``values``."""
    if not has_acuse:
        receipt = ask_receipt(client, job, calls)
        if isinstance(receipt, (Again, Hold)):
            return "none", receipt
        if receipt[0] is not None:
            values.update(acuse=receipt[0], acuse_fecha=receipt[1])
    try:
        status = _call(calls, "get_sat_status", client.get_sat_status, job.emisor_rfc,
                       job.receptor_rfc, job.uuid, job.total)
    except FinkokError as exc:
        return "none", judge_failure(exc, ambiguous=False)
    held = judge_lookup_error(status.error, job.emisor_rfc)
    if held is not None:
        return "none", held
    values.update(status_values(status))
    return judge_status(status), None
