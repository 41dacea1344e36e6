"""Stamping one invoice: claim it, talk to Finkok, settle the outcome. No broker in here.

    claim (tx) ──▶ Finkok calls (no transaction open) ──▶ settle (tx, fenced by the lease)

Guarantees (see shared/design/ARCHITECTURE.md):

* No double stamp. Every call sends the exact bytes intake stored. A row in
  ``stamping`` is a row whose stamp call may be in flight: a claim that takes one over
  (its holder died or hung past the lease) sets ``must_check_stamped``, and a settle
  after an ambiguous answer (a timeout, a dropped connection, a fault) keeps it set;
  only a definite answer clears it. While it is set, the next attempt asks ``stamped``
  first, and only ``603`` lets it ``stamp`` again. Finkok's own 307 is the second guard.
* No lost outcome. A UUID and its XML are committed in the settle transaction together
  with the state and the SIF outbox row; if the process dies before that commit, the
  lease expires, the sweeper hands the row to another worker, and ``stamped`` returns
  the stamp.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import String, bindparam, exists, insert, select
from sqlalchemy.orm import Session, sessionmaker
from structlog.contextvars import bind_contextvars

from worker import doorbell
from worker.cfdi.xml import parse
from worker.db import breakers
from worker.db.breakers import Blocking
from worker.db.lifecycle import ROW_ID, claim_invoice_for_stamp, move, outbox
from worker.db.models import Invoice, StampAttempt, utcnow
from worker.db.session import retry_dropped_connection
from worker.doorbell import Ring
from worker.finkok.calls import Call
from worker.finkok.errors import (
    FinkokAmbiguous,
    FinkokError,
    FinkokNotSent,
    Kind,
    message_of,
)
from worker.finkok.results import QueryPendingResult, StampResult
from worker.finkok.scope import Scope, cause_of, scope_of_code, scope_of_failure
from worker.invoices.notify import Claimed
from worker.invoices.policy import (
    Hold,
    Refused,
    Retry,
    Stamped,
    Unreadable,
    Verdict,
    decide,
    duplicate,
    window_closed,
)
from worker.settings import Settings

log = logging.getLogger(__name__)

Sleep = Callable[[float], None]

# Another invoice row, for "is this UUID held by someone else" (built once: an alias
# proxies every column, measured at ~1 ms a settle when built per call).
_OTHER = Invoice.__table__.alias("other")
# "Another invoice holds this UUID", prepared once for the settle's UPDATE (``move``).
_ELSEWHERE = (_OTHER.c.sat_uuid == bindparam("other_uuid", type_=String()), _OTHER.c.id != ROW_ID)
_HELD_ELSEWHERE = exists().where(*_ELSEWHERE)
# ... and which one it is (when the settle's UPDATE did not apply).
_HOLDER = select(_OTHER.c.id).where(*_ELSEWHERE)


class Finkok(Protocol):
    """What the pipeline needs of the PAC (``worker.finkok.client.FinkokClient``)."""

    def stamp(self, xml: bytes) -> StampResult: ...

    def stamped(self, xml: bytes) -> StampResult: ...

    def query_pending(self, uuid: str) -> QueryPendingResult: ...


@dataclass(frozen=True)
class Job:
    invoice_id: str
    xml: bytes
    attempts: int
    check_stamped_first: bool
    reference: str | None = None
    emisor_rfc: str | None = None
    deadline: datetime | None = None  # SAT's window less the margin (None: unknown)
    blocked: Blocking | None = None  # an open breaker: no call may be made
    breakers_quiet: bool = False  # the claim saw every breaker closed, no failure counted
    empresa_ref_id: str | None = None
    pedidoga: str | None = None

    @property
    def breaker_keys(self) -> tuple[str, ...]:
        return breakers.finkok_keys(self.emisor_rfc)


@dataclass(frozen=True)
class StampOutcome:
    invoice_id: str
    state: str  # the state we left the invoice in, or "skipped"
    notification_ids: tuple[str, ...] = ()
    retry_in_s: float | None = None
    reference: str | None = None
    detail: str | None = None  # the SAT UUID, or the first error code
    handed: Claimed | None = None  # the OK row born claimed by ``deliverer``: not rung

    @property
    def follow_ups(self) -> tuple[Ring, ...]:
        """Ring after the commit: each outbox row (but one handed to the deliverer), and
        the retry on the fast path."""
        handed = self.handed.id if self.handed is not None else None
        rings = [doorbell.notify(n, reference=self.reference) for n in self.notification_ids
                 if n != handed]
        if self.retry_in_s is not None:
            rings.append(doorbell.stamp(self.invoice_id, reference=self.reference,
                                        countdown=self.retry_in_s))
        return tuple(rings)

    @property
    def summary(self) -> str:
        """For people (Flower's task result): ``stamped 5B13C295-…``, ``rejected CFDI40143``."""
        return f"{self.state} {self.detail}" if self.detail else self.state


_STAMP_ATTEMPT = insert(StampAttempt.__table__)  # executed with rows of values


# --- the whole path of one invoice -----------------------------------------------------------


def stamp_invoice(
    sessions: sessionmaker[Session],
    client: Finkok,
    settings: Settings,
    invoice_id: str,
    *,
    owner: str,
    sleep: Sleep = time.sleep,
    rng: random.Random | None = None,
    deliverer: str | None = None,
) -> StampOutcome:
    """Claim, stamp (or recover), and settle one invoice. Safe to call any number of times.

    ``deliverer``: a lease owner that sends SIF's OK right after the commit (the stamping
    process's delivery thread, ``worker.invoices.first_delivery``): a fresh stamp's OK row
    is born claimed by it and comes back as ``outcome.handed``, not as a ring."""
    job = claim(sessions, invoice_id, owner=owner, settings=settings)
    if job is None:
        return StampOutcome(invoice_id, "skipped")
    calls: list[Call] = []
    if job.blocked is not None:  # no call while a breaker of its scope is open
        verdict: Verdict = Hold(job.blocked.key, job.blocked.code, job.blocked.describe(),
                                [_error(job.blocked.code or "held", job.blocked.describe(),
                                        "held")], answered=False, opens=False)
    else:
        verdict = talk_to_finkok(client, job, calls, settings=settings, sleep=sleep)
    return settle(sessions, job, verdict, calls, owner=owner, settings=settings, rng=rng,
                  deliverer=deliverer)


@retry_dropped_connection
def claim(
    sessions: sessionmaker[Session], invoice_id: str, *, owner: str, settings: Settings
) -> Job | None:
    """Take the invoice (CAS + lease); the same statement returns its XML and flags and
    whether every breaker is quiet. Only when one is not does the same transaction read
    whether a breaker of its scope forbids the call."""
    with sessions.begin() as session:
        row = claim_invoice_for_stamp(session, invoice_id, owner=owner,
                                      lease_s=settings.claim_lease_s)
        if row is None:
            return None
        blocked = None if row.breakers_quiet else breakers.blocking(
            session, breakers.finkok_keys(row.emisor_rfc), invoice_id)
    bind_contextvars(invoice_id=invoice_id, reference=row.reference,
                     empresa_ref_id=row.empresa_ref_id)  # on every line this task logs
    deadline = (row.stamp_deadline_at - timedelta(seconds=settings.sat_window_margin_s)
                if row.stamp_deadline_at is not None else None)
    return Job(invoice_id, row.xml, row.attempts, row.must_check_stamped, row.reference,
               row.emisor_rfc, deadline, blocked, bool(row.breakers_quiet), row.empresa_ref_id,
               row.pedidoga)


def talk_to_finkok(
    client: Finkok, job: Job, calls: list[Call], *, settings: Settings, sleep: Sleep
) -> Verdict:
    """Ask `stamped` first when a previous call went unanswered, then `stamp` (never once
    SAT's window is closing: the document must be re-sealed then)."""
    if job.check_stamped_first:
        verdict = _ask_stamped(client, job, calls)
        if verdict is not None:
            return verdict
    if job.deadline is not None and utcnow() >= job.deadline:
        return window_closed()
    try:
        result = _call(calls, "stamp", client.stamp, job.xml)
    except FinkokError as exc:
        return _failure(exc, job)

    kind = result.kind
    if kind is Kind.OK:
        return _stamped(result, recovered=False)
    if kind is Kind.ALREADY_STAMPED:
        if result.has_stamp:
            return _stamped(result, recovered=True)
        return _look_up_previous_stamp(client, job, calls, settings=settings, sleep=sleep)
    held = _hold_for(result, job)
    if held is not None:
        return held
    if kind in (Kind.FISCAL_DATA, Kind.PERMANENT):
        return Refused(kind, _errors(result))
    # TRANSIENT (708, 709...) or NOT_STAMPED: a definite "not stamped" when Finkok named a
    # code; an empty answer taught us nothing, so the next attempt asks `stamped` first.
    return Retry(ambiguous=not result.incidencias, errors=_errors(result))


def _ask_stamped(client: Finkok, job: Job, calls: list[Call]) -> Verdict | None:
    """None: Finkok holds no stamp for these bytes (603), so stamping is safe."""
    try:
        result = _call(calls, "stamped", client.stamped, job.xml)
    except FinkokError as exc:
        failure = _failure(exc, job)
        return failure if isinstance(failure, Hold) else Retry(True, _exception_errors(exc))
    if result.has_stamp:
        return _stamped(result, recovered=True)
    if result.not_stamped:
        return None
    held = _hold_for(result, job, answered=False)  # still must check: nothing was learnt
    if held is not None:
        return held
    return Retry(ambiguous=True, errors=_errors(result))


def _look_up_previous_stamp(
    client: Finkok, job: Job, calls: list[Call], *, settings: Settings, sleep: Sleep
) -> Verdict:
    """307 without the XML: Finkok stamped these bytes before. Ask `stamped` a bounded
    number of times with a growing pause (0.2 s, then 0.4 s doubling, at most 5 s: Finkok
    needs a moment to index a stamp it just made); after that the invoice waits, still
    must-check."""
    from tenacity import (
        RetryError,
        Retrying,
        retry_if_exception_type,
        retry_if_result,
        stop_after_attempt,
        wait_exponential,
    )

    attempts = Retrying(
        stop=stop_after_attempt(settings.stamped_lookup_max_attempts),
        wait=wait_exponential(multiplier=0.4, max=5.0), sleep=sleep,
        retry=retry_if_exception_type(FinkokError) | retry_if_result(lambda r: not r.has_stamp),
    )
    sleep(0.2)
    try:
        result = attempts(_call, calls, "stamped", client.stamped, job.xml)
    except (RetryError, FinkokError):
        result = None
    if result is not None and result.has_stamp:
        return _stamped(result, recovered=True)
    return Retry(
        ambiguous=True,
        errors=[_error("307", "El CFDI contiene un timbre previo; `stamped` did not return it yet")],
        failure=False,
    )


@retry_dropped_connection
def settle(
    sessions: sessionmaker[Session],
    job: Job,
    verdict: Verdict,
    calls: list[Call],
    *,
    owner: str,
    settings: Settings,
    rng: random.Random | None = None,
    deliverer: str | None = None,
) -> StampOutcome:
    """Record the calls and move the invoice, with its outbox row, in one transaction
    (tried again if the database dropped the connection: the Finkok answer is not lost
    to a database hiccup, and the calls are never repeated)."""
    now = utcnow()
    with sessions.begin() as session:
        if calls:
            session.connection().execute(_STAMP_ATTEMPT, [
                {"invoice_id": job.invoice_id, "operation": c.operation,
                 "started_at": c.started_at, "duration_ms": c.duration_ms,
                 "outcome": c.outcome, "codes": c.codes or None, "message": c.message,
                 "worker": owner}
                for c in calls
            ])
        _observe(session, job, verdict, calls, settings=settings, now=now)
        outcome = _apply(session, job, verdict, owner=owner, settings=settings, now=now, rng=rng,
                         deliverer=deliverer)
    _log_outcome(job, verdict, outcome)
    return outcome


def _apply(session: Session, job: Job, verdict: Verdict, *, owner: str, settings: Settings,
           now: datetime, rng: random.Random | None,
           deliverer: str | None = None) -> StampOutcome:
    """Take the decided edge (fenced by our lease) and write its outbox row. A stamp whose
    UUID another invoice already holds is that invoice's: this one is a DUPLICATE. A
    fresh stamp's OK is born claimed by ``deliverer`` when the breakers were quiet at the
    claim (else the deliverer claims it as the notify task would)."""
    decision = decide(verdict, attempts=job.attempts, settings=settings, now=now,
                      deadline=job.deadline, rng=rng)
    unless, unless_params = None, None
    if isinstance(verdict, (Stamped, Unreadable)):
        unless, unless_params = _HELD_ELSEWHERE, {"other_uuid": verdict.uuid}
    if not move(session, decision.edge, job.invoice_id, owner=owner, now=now, unless=unless,
                unless_params=unless_params, updated_at=now, **decision.values):
        holder = (session.scalar(_HOLDER, {"other_uuid": verdict.uuid, "row_id": job.invoice_id})
                  if isinstance(verdict, (Stamped, Unreadable)) else None)
        if holder is None or not isinstance(verdict, (Stamped, Unreadable)):
            return _lost_lease(job, decision.edge.target)
        return _apply(session, job, duplicate(holder, verdict.uuid), owner=owner,
                      settings=settings, now=now, rng=rng)
    handed: Claimed | None = None
    ids: tuple[str, ...] = ()
    if decision.outbox:
        born = (deliverer if decision.outbox == "OK" and isinstance(verdict, Stamped)
                and job.breakers_quiet and job.reference and job.empresa_ref_id else None)
        ids = (outbox(session, job.invoice_id, decision.outbox, now=now, leased_to=born,
                      lease_s=settings.claim_lease_s),)
        if born is not None and isinstance(verdict, Stamped):
            handed = Claimed.born_ok(
                ids[0], invoice_id=job.invoice_id, reference=job.reference or "",
                empresa_ref_id=job.empresa_ref_id or "", pedidoga=job.pedidoga,
                sat_uuid=verdict.uuid, stamped_xml=decision.values["stamped_xml"],
                state=decision.edge.target)
    detail = verdict.uuid if isinstance(verdict, Stamped) else (
        verdict.errors[0].get("code") if verdict.errors else None)
    return StampOutcome(job.invoice_id, decision.edge.target, ids, decision.retry_in_s,
                        job.reference, detail, handed)


def _observe(session: Session, job: Job, verdict: Verdict, calls: list[Call], *,
              settings: Settings, now: datetime) -> None:
    """What this attempt teaches the breakers (whatever happens to our lease: these are
    facts about Finkok). A normal answer closes them; an account or emisor answer opens
    one at once; a service failure counts toward the service breaker's threshold. (When
    the claim saw every breaker quiet, a normal answer has nothing to write.)"""
    if not calls:
        return  # nothing was sent (a breaker held it, or the window closed)
    if isinstance(verdict, Hold) and verdict.opens:
        breakers.open_(session, verdict.key, code=verdict.code, cause=verdict.cause,
                       probe_after_s=settings.breaker_probe_s, now=now)
    elif isinstance(verdict, Retry) and verdict.failure:
        breakers.note_finkok_failure(session, verdict.errors, settings=settings, now=now)
    elif isinstance(verdict, (Stamped, Refused, Unreadable)) and not job.breakers_quiet:
        breakers.succeeded(session, job.breaker_keys, now=now, reason="Finkok answered")


def _lost_lease(job: Job, wanted: str) -> StampOutcome:
    # Another worker took the invoice over after our lease expired. It asks `stamped`
    # first (must_check_stamped is still set), so whatever we learned is not lost.
    log.warning("lease lost before settling invoice %s as %s; the new holder decides",
                job.invoice_id, wanted, extra={"invoice_id": job.invoice_id})
    return StampOutcome(job.invoice_id, "skipped")


# --- small helpers -------------------------------------------------------------------------


def _call(calls: list[Call], operation: str, fn: Callable[[bytes], StampResult], xml: bytes) -> StampResult:
    started = utcnow()
    t0 = time.perf_counter()
    try:
        result = fn(xml)
    except FinkokError as exc:
        outcome = "not_sent" if isinstance(exc, FinkokNotSent) else (
            "ambiguous" if isinstance(exc, FinkokAmbiguous) else str(exc.kind)
        )
        calls.append(Call(operation, started, _ms(t0), outcome, message=str(exc)[:500]))
        raise
    outcome = "success" if result.has_stamp and not result.incidencias else str(result.kind)
    calls.append(Call(operation, started, _ms(t0), outcome, list(result.codes),
                      result.cod_estatus))
    return result


def _ms(t0: float) -> int:
    return int((time.perf_counter() - t0) * 1000)


def _stamped(result: StampResult, *, recovered: bool) -> Stamped | Unreadable:
    """A fresh `stamp` answer means Finkok delivered it to SAT (it answers no stamp when it
    could not). A stamp recovered through `stamped` or a 307 may still sit in Finkok's
    queue for SAT: it goes to `pending` and query_pending says when it arrived. A stamped
    XML that does not parse is never settled as `stamped` (no OK could be built from it)."""
    assert result.uuid and result.xml
    try:
        parse(result.xml.encode("utf-8"))
    except Exception as exc:
        log.error("invoice stamped as %s but its stamped XML cannot be parsed (%s): kept as "
                  "failed/unreadable for a person; it is never stamped again",
                  result.uuid, type(exc).__name__)
        return Unreadable(result.uuid.upper(), result.xml, [_error(
            "UNREADABLE", f"Finkok stamped it (UUID {result.uuid.upper()}) but the stamped XML "
            f"cannot be parsed ({type(exc).__name__}): get it with `billing finkok get-xml` "
            "and look at it before anything else", "unreadable")])
    return Stamped(
        uuid=result.uuid.upper(),
        xml=result.xml,
        fecha=result.fecha,
        no_certificado_sat=result.no_certificado_sat,
        pending_sat=recovered,
    )


def _failure(exc: FinkokError, job: Job) -> Verdict:
    """A failed exchange: the service's (retry, counted toward its breaker) or ours (a proxy
    or a wrong URL answering 401/404: hold everything until it is fixed)."""
    if scope_of_failure(exc) is Scope.ACCOUNT:
        status = getattr(exc, "status", None)
        cause = f"Finkok's URL answers HTTP {status}, not SOAP (check BILLING_FINKOK_ENVIRONMENT)"
        return Hold(breakers.ACCOUNT_KEY, f"http_{status}", cause, _exception_errors(exc),
                    answered=False, opens=True)
    # Not sent: Finkok never saw it. Anything else (timeout, reset, fault) may have stamped.
    return Retry(ambiguous=not isinstance(exc, FinkokNotSent), errors=_exception_errors(exc))


def _hold_for(result: StampResult, job: Job, *, answered: bool = True) -> Hold | None:
    """An answer whose code is the account's or the emisor's, not the document's."""
    for code in result.codes:
        scope = scope_of_code(code)
        if scope in (Scope.ACCOUNT, Scope.EMISOR):
            key = (breakers.ACCOUNT_KEY if scope is Scope.ACCOUNT
                   else breakers.emisor_key(job.emisor_rfc or "?"))
            return Hold(key, code, cause_of(code), _errors(result), answered=answered,
                        opens=True)
    return None


def _error(code: str, message: str, kind: str | None = None) -> dict[str, str]:
    from worker.finkok.errors import classify

    return {"code": code, "message": message, "kind": kind or str(classify(code))}


def _errors(result: StampResult) -> list[dict[str, str]]:
    return [
        _error(i.codigo_error or "?", i.mensaje or message_of(i.codigo_error or "") or "")
        for i in result.incidencias
    ]


def _exception_errors(exc: FinkokError) -> list[dict[str, str]]:
    label = type(exc).__name__.removeprefix("Finkok").lower()
    return [{"code": label, "message": str(exc)[:500], "kind": str(exc.kind)}]


def _log_outcome(job: Job, verdict: Verdict, outcome: StampOutcome) -> None:
    extra: dict[str, Any] = {"invoice_id": job.invoice_id}
    if isinstance(verdict, Stamped):
        extra["sat_uuid"] = verdict.uuid
    log.info("invoice %s -> %s", job.invoice_id, outcome.state, extra=extra)
