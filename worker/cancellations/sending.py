"""Sending one cancellation: claim it, talk to Finkok, settle. No broker in here.

    claim (tx: CAS + lease; a breaker of its scope open? → held, no call)
      ──▶ sign + Finkok (no transaction open) ──▶ settle (tx, fenced: breakers + the edge)

* **Never a second request blindly.** A row whose request may have reached Finkok without
  an answer (a timeout, a dropped connection, a SOAP fault, or a take-over after its
  holder died) has ``must_check``: the next attempt asks ``get_receipt`` (Finkok keeps the
  acuse of every accepted request) and ``get_sat_status`` first, and sends only when
  neither shows a request. Finkok's 202 ("requested before") is the second guard and is
  taken as success.
* **An outage is never a fiscal failure.** Every answer and failure is sorted by fault
  scope (``worker.cancellations.policy``) and feeds the breakers stamping uses
  (``worker.db.breakers``): an account or emisor fault opens its breaker at once, a
  service failure counts toward the service breaker's threshold. While a breaker of the
  row's scope is open the row waits in ``held`` with its attempt given back (a row
  claimed then makes no call), and the sweeper releases it when the breaker closes
  (``worker.invoices.holds``). Only refusals of the request end ``cancel_failed``.
* **The acuse is kept as sent.** The ``Acuse`` text of a 201 (or the ``receipt`` of
  ``get_receipt`` when the 201 was lost, or for a 202) is stored as its UTF-8 bytes.
* Every Finkok call is a ``stamp_attempts`` row of the invoice (operation
  ``cancel_signature``, ``get_receipt``, ``get_sat_status``), so ``invoices show`` and the
  metrics count them with the stamping calls.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from worker.cancellations.csds import NoCsd, signing_csd
from worker.cancellations.policy import (
    Accepted,
    Again,
    Found,
    Hold,
    Refused,
    Verdict,
    decide,
    judge_cancel,
    judge_failure,
    judge_lookup_error,
    judge_status,
)
from worker.cfdi.cancellation import CancelRequest, CancelRequestError, sign_cancelacion
from worker.cfdi.csd import CsdError
from worker.db import breakers
from worker.db.breakers import Blocking
from worker.db.lifecycle import claim_cancellation, move
from worker.db.models import StampAttempt, utcnow
from worker.finkok.calls import Call
from worker.finkok.errors import FinkokAmbiguous, FinkokError, FinkokNotSent
from worker.finkok.results import CancelResult, ReceiptResult, SatStatusResult
from worker.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")


class CancelFinkok(Protocol):
    """What a cancellation needs of the PAC (``worker.finkok.client.FinkokClient``)."""

    def cancel_signature(self, xml: bytes, *, store_pending: bool = False) -> CancelResult: ...

    def get_receipt(self, taxpayer_id: str, uuid: str, type: str = "C") -> ReceiptResult: ...

    def get_sat_status(self, taxpayer_id: str, rtaxpayer_id: str, uuid: str,
                       total: str) -> SatStatusResult: ...


@dataclass(frozen=True)
class Job:
    cancellation_id: str
    invoice_id: str
    uuid: str
    emisor_rfc: str
    receptor_rfc: str
    total: str
    motivo: str
    folio_sustitucion: str | None
    attempts: int
    must_check: bool
    blocked: Blocking | None = None  # a breaker of its scope is open: no call may be made

    @property
    def breaker_keys(self) -> tuple[str, ...]:
        """The breakers a cancellation for this emisor passes through (stamping's)."""
        return breakers.finkok_keys(self.emisor_rfc)


@dataclass(frozen=True)
class SendOutcome:
    cancellation_id: str
    state: str  # the state we left it in, or "skipped"
    detail: str | None = None
    retry_in_s: float | None = None

    @property
    def summary(self) -> str:
        return f"{self.state} {self.detail}" if self.detail else self.state


def send_cancellation(sessions: sessionmaker[Session], client: CancelFinkok, settings: Settings,
                      cancellation_id: str, *, owner: str,
                      rng: random.Random | None = None) -> SendOutcome:
    """Claim, (check,) sign and send, settle. Safe to call any number of times. A row whose
    breaker is open when claimed is held without a call."""
    job = claim(sessions, cancellation_id, owner=owner, settings=settings)
    if job is None:
        return SendOutcome(cancellation_id, "skipped")
    calls: list[Call] = []
    request_xml: bytes | None = None
    verdict: Verdict | Found | None = None
    if job.blocked is not None:
        cause = job.blocked.describe()
        verdict = Hold(job.blocked.key, job.blocked.code, cause,
                       [{"code": job.blocked.code or "held", "message": cause, "kind": "held"}],
                       opens=False)
    elif job.must_check:
        verdict = check_first(client, job, calls)
    if verdict is None:
        try:
            csd = signing_csd(settings.cancel_csds, job.emisor_rfc)
            request_xml = sign_cancelacion(
                CancelRequest(job.emisor_rfc, job.uuid, job.motivo, job.folio_sustitucion), csd)
        except (NoCsd, CsdError, CancelRequestError) as exc:
            verdict = Refused([{"code": "csd", "message": str(exc)[:500], "kind": "config"}])
        else:
            verdict = talk(client, job, request_xml, calls)
    return settle(sessions, job, verdict, calls, request_xml, owner=owner, settings=settings,
                  rng=rng)


def claim(sessions: sessionmaker[Session], cancellation_id: str, *, owner: str,
          settings: Settings) -> Job | None:
    """Take the row (CAS + lease); the same transaction reads whether a breaker of its
    scope forbids the call (a half-open one lets this row through as its probe)."""
    with sessions.begin() as session:
        row = claim_cancellation(session, cancellation_id, owner=owner,
                                 lease_s=settings.claim_lease_s)
        if row is None:
            return None
        blocked = breakers.blocking(session, breakers.finkok_keys(row.emisor_rfc), cancellation_id)
    return Job(cancellation_id, row.invoice_id, row.sat_uuid, row.emisor_rfc, row.receptor_rfc,
               row.total, row.motivo, row.folio_sustitucion, row.attempts, row.must_check, blocked)


def check_first(client: CancelFinkok, job: Job, calls: list[Call]) -> Found | Again | Hold | None:
    """Did an earlier, unanswered request reach SAT? None: no sign of one, send. A lookup
    that fails (or names an account/emisor fault) is the verdict: nothing was learnt, so
    the row stays must-check."""
    receipt = ask_receipt(client, job, calls)
    if isinstance(receipt, (Again, Hold)):
        return receipt
    acuse, fecha = receipt
    try:
        status = _call(calls, "get_sat_status", client.get_sat_status, job.emisor_rfc,
                       job.receptor_rfc, job.uuid, job.total)
    except FinkokError as exc:
        return judge_failure(exc, ambiguous=True)
    held = judge_lookup_error(status.error, job.emisor_rfc)
    if held is not None:
        return dataclasses.replace(held, ambiguous=True)
    settled = judge_status(status)
    if settled == "cancelled":
        return Found("cancelled", acuse, fecha, status)
    if settled == "in_process" or acuse is not None:
        return Found("in_process", acuse, fecha, status)
    return None  # nothing requested, or a request of ours was rejected: send (a new request)


def ask_receipt(client: CancelFinkok, job: Job, calls: list[Call]
                ) -> tuple[bytes | None, str | None] | Again | Hold:
    """The acuse Finkok keeps for the UUID (None when it has none); a failed call, or an
    error naming our account or the emisor's setup, is returned as its verdict."""
    try:
        receipt = _call(calls, "get_receipt", client.get_receipt, job.emisor_rfc, job.uuid, "C")
    except FinkokError as exc:
        return judge_failure(exc, ambiguous=True)
    if receipt.success and receipt.receipt:
        return receipt.receipt.encode("utf-8"), receipt.date
    held = judge_lookup_error(receipt.error, job.emisor_rfc)
    return dataclasses.replace(held, ambiguous=True) if held is not None else (None, None)


def fetch_receipt(client: CancelFinkok, job: Job, calls: list[Call]) -> tuple[bytes | None, str | None]:
    """The acuse Finkok keeps for the UUID, as bytes (None when it has none, or on a failure)."""
    found = ask_receipt(client, job, calls)
    return (None, None) if isinstance(found, (Again, Hold)) else found


def talk(client: CancelFinkok, job: Job, request_xml: bytes, calls: list[Call]) -> Verdict:
    try:
        result = _call(calls, "cancel_signature", client.cancel_signature, request_xml)
    except FinkokError as exc:  # not sent, or no answer (it may have reached SAT)
        return judge_failure(exc)
    verdict = judge_cancel(result, job.uuid, job.emisor_rfc)
    if isinstance(verdict, Accepted) and verdict.acuse is None:  # a 202: fetch the acuse kept
        acuse, fecha = fetch_receipt(client, job, calls)
        verdict = Accepted(verdict.estatus, acuse, fecha or verdict.fecha)
    return verdict


def settle(sessions: sessionmaker[Session], job: Job, verdict: Verdict | Found, calls: list[Call],
           request_xml: bytes | None, *, owner: str, settings: Settings,
           rng: random.Random | None = None) -> SendOutcome:
    """Record the calls, tell the breakers what they showed, and take the decided edge
    (fenced by our lease), in one transaction."""
    now = utcnow()
    with sessions.begin() as session:
        if calls:
            session.execute(insert(StampAttempt.__table__), [
                {"invoice_id": job.invoice_id, "operation": c.operation, "started_at": c.started_at,
                 "duration_ms": c.duration_ms, "outcome": c.outcome, "codes": c.codes or None,
                 "message": c.message, "worker": owner} for c in calls])
        open_key = observe(session, job, verdict, calls, settings=settings, now=now)
        decision = decide(verdict, attempts=job.attempts, must_check=job.must_check,
                          open_key=open_key, settings=settings, now=now, rng=rng)
        values: dict[str, Any] = {**decision.values, "updated_at": now}
        if request_xml is not None:
            values["request_xml"] = request_xml
        edge = decision.edge
        if not move(session, edge, job.cancellation_id, owner=owner, now=now, **values):
            log.warning("lease lost before settling cancellation %s as %s", job.cancellation_id,
                        edge.target)
            return SendOutcome(job.cancellation_id, "skipped")
    detail = (verdict.estatus if isinstance(verdict, Accepted) else
              verdict.errors[0]["code"] if not isinstance(verdict, Found) and verdict.errors
              else None)
    extra = {"invoice_id": job.invoice_id, "sat_uuid": job.uuid}
    if edge.name == "hold":
        log.warning("cancellation %s held on %s (%s); it resumes when the breaker closes",
                    job.cancellation_id, values["hold_key"], detail, extra=extra)
    else:
        log.info("cancellation %s -> %s", job.cancellation_id, edge.target, extra=extra)
    return SendOutcome(job.cancellation_id, edge.target, detail, decision.retry_in_s)


def observe(session: Session, job: Job, verdict: Verdict | Found, calls: list[Call], *,
            settings: Settings, now: datetime) -> str | None:
    """What this send teaches the breakers (facts about Finkok, recorded whatever happens
    to our lease), and the breaker of the row's scope left open, if any: an account or
    emisor answer opens its breaker at once; a service failure counts toward the service
    breaker's threshold; an answer to ``cancel_signature`` (accepted, or a refusal of the
    request) closes them. Lookups that answered prove nothing about the cause of an open
    breaker (credits, say) and change nothing."""
    if isinstance(verdict, Hold):
        if verdict.opens:
            note_outage(session, verdict, settings=settings, now=now)
        return verdict.key
    if isinstance(verdict, Again) and verdict.outage:
        note_outage(session, verdict, settings=settings, now=now)
        blocked = breakers.first_not_closed(session, job.breaker_keys)
        return blocked.key if blocked is not None else None
    if isinstance(verdict, (Accepted, Refused)) and any(
            c.operation == "cancel_signature" for c in calls):
        breakers.succeeded(session, job.breaker_keys, now=now,
                           reason="Finkok answered a cancellation")
    return None


def note_outage(session: Session, verdict: Again | Hold, *, settings: Settings,
                now: datetime) -> None:
    """Count a service failure toward the service breaker, or open an account/emisor one."""
    if isinstance(verdict, Hold):
        breakers.open_(session, verdict.key, code=verdict.code, cause=verdict.cause,
                       probe_after_s=settings.breaker_probe_s, now=now)
        return
    breakers.note_finkok_failure(session, verdict.errors, settings=settings, now=now)


def _call(calls: list[Call], operation: str, fn: Callable[..., T], *args: Any) -> T:
    started = utcnow()
    t0 = time.perf_counter()
    try:
        result = fn(*args)
    except FinkokError as exc:
        outcome = "not_sent" if isinstance(exc, FinkokNotSent) else (
            "ambiguous" if isinstance(exc, FinkokAmbiguous) else str(exc.kind))
        calls.append(Call(operation, started, _ms(t0), outcome, message=str(exc)[:500]))
        raise
    calls.append(Call(operation, started, _ms(t0), _outcome(result), _codes(result)))
    return result


def _outcome(result: Any) -> str:
    if isinstance(result, CancelResult):
        codes = {f.estatus_uuid for f in result.folios}
        return "success" if codes and codes <= {"201", "202"} else "rejected"
    if isinstance(result, ReceiptResult):
        return "success" if result.success else "not_found"
    return "success" if not getattr(result, "error", None) else "rejected"


def _codes(result: Any) -> list[str]:
    if isinstance(result, CancelResult):
        codes = [f.estatus_uuid for f in result.folios if f.estatus_uuid]
        return codes or ([result.cod_estatus[:32]] if result.cod_estatus else [])
    return []


def _ms(t0: float) -> int:
    return int((time.perf_counter() - t0) * 1000)

