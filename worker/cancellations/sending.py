"""Sending one cancellation: claim it, talk to Finkok, settle. No broker in here.

    claim (tx: CAS + lease) ──▶ sign + Finkok (no transaction open) ──▶ settle (tx, fenced)

* **Never a second request blindly.** A row whose request may have reached Finkok without
  an answer (a timeout, a dropped connection, a SOAP fault, or a take-over after its
  holder died) has ``must_check``: the next attempt asks ``get_receipt`` (Finkok keeps the
  acuse of every accepted request) and ``get_sat_status`` first, and sends only when
  neither shows a request. Finkok's 202 ("requested before") is the second guard and is
  taken as success.
* **The acuse is kept as sent.** The ``Acuse`` text of a 201 (or the ``receipt`` of
  ``get_receipt`` when the 201 was lost, or for a 202) is stored as its UTF-8 bytes.
* Every Finkok call is a ``stamp_attempts`` row of the invoice (operation
  ``cancel_signature``, ``get_receipt``, ``get_sat_status``), so ``invoices show`` and the
  metrics count them with the stamping calls.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol, TypeVar

from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from worker.cancellations.csds import NoCsd, signing_csd
from worker.cancellations.policy import (
    Accepted,
    Again,
    Refused,
    Verdict,
    judge_cancel,
    judge_status,
    send_delay_s,
)
from worker.cfdi.cancellation import CancelRequest, CancelRequestError, sign_cancelacion
from worker.cfdi.csd import CsdError
from worker.db.lifecycle import claim_cancellation, move
from worker.db.models import StampAttempt, utcnow
from worker.db.states import CANCELLATION_EDGES
from worker.finkok.calls import Call
from worker.finkok.errors import FinkokAmbiguous, FinkokError, FinkokNotSent
from worker.finkok.results import CancelResult, ReceiptResult, SatStatusResult
from worker.settings import Settings

log = logging.getLogger(__name__)
E = CANCELLATION_EDGES
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


@dataclass(frozen=True)
class Settled:
    """The state a status check found: already cancelled, or already in process."""

    state: str  # "cancelled" / "in_process"
    acuse: bytes | None
    fecha: str | None
    status: SatStatusResult | None


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
    """Claim, (check,) sign and send, settle. Safe to call any number of times."""
    job = claim(sessions, cancellation_id, owner=owner, settings=settings)
    if job is None:
        return SendOutcome(cancellation_id, "skipped")
    calls: list[Call] = []
    request_xml: bytes | None = None
    found = check_first(client, job, calls) if job.must_check else None
    if found is not None:
        verdict: Verdict | Settled = found
    else:
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
    with sessions.begin() as session:
        row = claim_cancellation(session, cancellation_id, owner=owner,
                                 lease_s=settings.claim_lease_s)
    if row is None:
        return None
    return Job(cancellation_id, row.invoice_id, row.sat_uuid, row.emisor_rfc, row.receptor_rfc,
               row.total, row.motivo, row.folio_sustitucion, row.attempts, row.must_check)


def check_first(client: CancelFinkok, job: Job, calls: list[Call]) -> Settled | Again | None:
    """Did an earlier, unanswered request reach SAT? None: no sign of one, send."""
    acuse, fecha = fetch_receipt(client, job, calls)
    try:
        status = _call(calls, "get_sat_status", client.get_sat_status, job.emisor_rfc,
                       job.receptor_rfc, job.uuid, job.total)
    except FinkokError as exc:
        return Again(True, [_exc_error(exc)])
    settled = judge_status(status)
    if settled == "cancelled":
        return Settled("cancelled", acuse, fecha, status)
    if settled == "in_process" or acuse is not None:
        return Settled("in_process", acuse, fecha, status)
    if settled == "rejected":  # a request of ours was rejected: send again (a new request)
        return None
    return None


def fetch_receipt(client: CancelFinkok, job: Job, calls: list[Call]) -> tuple[bytes | None, str | None]:
    """The acuse Finkok keeps for the UUID, as bytes (None when it has none, or on a failure)."""
    try:
        receipt = _call(calls, "get_receipt", client.get_receipt, job.emisor_rfc, job.uuid, "C")
    except FinkokError:
        return None, None
    if receipt.success and receipt.receipt:
        return receipt.receipt.encode("utf-8"), receipt.date
    return None, None


def talk(client: CancelFinkok, job: Job, request_xml: bytes, calls: list[Call]) -> Verdict:
    try:
        result = _call(calls, "cancel_signature", client.cancel_signature, request_xml)
    except FinkokNotSent as exc:
        return Again(False, [_exc_error(exc)])
    except FinkokError as exc:  # timeout, reset, fault: it may have reached SAT
        return Again(True, [_exc_error(exc)])
    verdict = judge_cancel(result, job.uuid)
    if isinstance(verdict, Accepted) and verdict.acuse is None:  # a 202: fetch the acuse kept
        acuse, fecha = fetch_receipt(client, job, calls)
        verdict = Accepted(verdict.estatus, acuse, fecha or verdict.fecha)
    return verdict


def settle(sessions: sessionmaker[Session], job: Job, verdict: Verdict | Settled, calls: list[Call],
           request_xml: bytes | None, *, owner: str, settings: Settings,
           rng: random.Random | None = None) -> SendOutcome:
    """Record the calls and take the edge (fenced by our lease) in one transaction."""
    now = utcnow()
    values: dict[str, Any] = {"updated_at": now}
    if request_xml is not None:
        values["request_xml"] = request_xml
    retry_in: float | None = None
    if isinstance(verdict, Settled):
        edge = E["settled"] if verdict.state == "cancelled" else E["sent"]
        values.update(must_check=False, errors=None, acuse=verdict.acuse, acuse_fecha=verdict.fecha,
                      next_attempt_at=now + timedelta(seconds=settings.cancel_poll_base_s))
        if verdict.status is not None:
            values.update(_status_values(verdict.status))
        if verdict.state == "cancelled":
            values.update(cancelled_at=now, next_attempt_at=None)
    elif isinstance(verdict, Accepted):
        edge = E["sent"]
        values.update(must_check=False, errors=None, estatus_uuid=verdict.estatus, acuse=verdict.acuse,
                      acuse_fecha=verdict.fecha,
                      next_attempt_at=now + timedelta(seconds=min(settings.cancel_poll_base_s, 5.0)))
    elif isinstance(verdict, Refused) or job.attempts >= settings.cancel_max_attempts:
        edge = E["refused"]
        values.update(errors=verdict.errors, next_attempt_at=None,
                      must_check=isinstance(verdict, Again) and verdict.ambiguous)
        if isinstance(verdict, Refused) and verdict.errors:
            values["estatus_uuid"] = verdict.errors[0]["code"][:16]
    else:
        edge = E["retry"]
        retry_in = send_delay_s(job.attempts, base_s=settings.stamp_backoff_base_s,
                                max_s=settings.stamp_backoff_max_s, rng=rng)
        if verdict.ambiguous:  # let a late answer land before asking SAT
            retry_in = max(retry_in, settings.finkok_read_timeout_s)
        values.update(errors=verdict.errors, must_check=job.must_check or verdict.ambiguous,
                      next_attempt_at=now + timedelta(seconds=retry_in))
    with sessions.begin() as session:
        if calls:
            session.execute(insert(StampAttempt.__table__), [
                {"invoice_id": job.invoice_id, "operation": c.operation, "started_at": c.started_at,
                 "duration_ms": c.duration_ms, "outcome": c.outcome, "codes": c.codes or None,
                 "message": c.message, "worker": owner} for c in calls])
        if not move(session, edge, job.cancellation_id, owner=owner, now=now, **values):
            log.warning("lease lost before settling cancellation %s as %s", job.cancellation_id,
                        edge.target)
            return SendOutcome(job.cancellation_id, "skipped")
    log.info("cancellation %s -> %s", job.cancellation_id, edge.target,
             extra={"invoice_id": job.invoice_id, "sat_uuid": job.uuid})
    detail = (verdict.estatus if isinstance(verdict, Accepted) else
              verdict.errors[0]["code"] if isinstance(verdict, (Again, Refused)) and verdict.errors
              else None)
    return SendOutcome(job.cancellation_id, edge.target, detail, retry_in)


def _status_values(status: SatStatusResult) -> dict[str, Any]:
    return {"sat_estado": (status.estado or "")[:32] or None,
            "sat_estatus_cancelacion": (status.estatus_cancelacion or "")[:64] or None,
            "es_cancelable": (status.es_cancelable or "")[:64] or None}


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


def _exc_error(exc: FinkokError) -> dict[str, str]:
    label = type(exc).__name__.removeprefix("Finkok").lower()
    return {"code": label, "message": str(exc)[:500], "kind": str(exc.kind)}
