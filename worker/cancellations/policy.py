"""What Finkok's and SAT's answers mean for a cancellation: pure decisions, no I/O.

**Who must act** (the fault scope of ``worker.finkok.scope``, as for stamping): only a
refusal of *this request* may end ``cancel_failed``. An outage, a bad credential or an
empty credit balance is ours: the row waits in ``held`` on the same database breakers as
stamping (``finkok:account``, ``finkok:service``, ``finkok:emisor:<RFC>``) and resumes by
itself when the breaker closes.

``cancel_signature`` (one folio per request), and the transport failures of any call:

| answer (EstatusUUID, CodEstatus, or the failure)                   | fault    | verdict     |
|--------------------------------------------------------------------|----------|-------------|
| 201 (request received) with the Acuse; 202 (requested before)      | —        | Accepted    |
| 205, 305, 1205, 1308, "UUID … No Encontrado", "Already en           | lag      | Again       |
| BufferCancellation": SAT does not know the fresh CFDI yet          | (document) |           |
| an empty answer: no folio, no status, no Acuse                     | lag      | Again, ambiguous |
| 203, 207, 208, 798, 799, no_cancelable, 301–304; any other code    | refused  | Refused     |
| or text                                                            | (document) |           |
| 702, 713, 719–721, "… no tiene certificado … activo"               | emisor   | Hold: opens |
|                                                                    |          | the RFC's   |
| 718, 701, 703, 704, 706, 714, 604, 740, "Invalid Username or       | account  | Hold: opens |
| Password"; HTTP 401/404 (a proxy, a wrong URL)                     |          | finkok:account |
| 708, 709, 300 (SAT's authentication service, in cancel CodEstatus), | service | Again, outage |
| "conectar al SAT"; not sent (connection refused); no answer        | (outage) | (ambiguous  |
| (timeout, dropped connection, 5xx, SOAP fault)                     |          | unless not sent) |

301–304 are SAT's verdict on the *signed request* (malformed, bad seal, not the emisor's
seal, an expired or revoked certificate): the CSD that signs cancellations is our setting
(``BILLING_CANCEL_CSDS``), checked at the door, and a new CSD means a new signed request:
``cancel_failed`` (alarmed: ``BillingCancellationFailed``), then ``billing cancel`` again.
(A 304 is not sent to the emisor's breaker: that would pause the emisor's *stamping*,
whose documents carry the ERP's seal, for a fault in our cancellation setting.)

``decide`` — the next move of a send, given the verdict and whether a breaker of the row's
scope is open after the verdict was observed (``open_key``: the caller opened it, counted
a failure that opened it, or found it open at the claim):

| verdict                                          | breaker | edge    | attempts   | must_check |
|--------------------------------------------------|---------|---------|------------|------------|
| Found cancelled (the check before a resend)      | —       | settled | counted    | cleared    |
| Found in process, or an acuse kept               | —       | sent    | counted    | cleared    |
| Accepted                                         | —       | sent    | counted    | cleared    |
| Refused                                          | —       | refused | counted    | cleared    |
| Hold (an answer, or open at the claim: no call)  | —       | hold    | given back | kept (1)   |
| Again, outage                                    | open    | hold    | given back | kept (1)   |
| Again, outage                                    | closed  | retry   | given back | kept (1)   |
| Again, lag, attempts left                        | —       | retry   | counted    | kept (1)   |
| Again, lag, ``cancel_max_attempts`` reached      | —       | refused | counted    | kept (1)   |

(1) kept as it was, and set when this call went unanswered (ambiguous).

So ``cancel_max_attempts`` counts only what the *document* keeps answering (SAT's lag);
an outage never uses it up. An outage retry's pause does not grow with the outage: the
service breaker is its backoff (``breaker_service_threshold`` failures in a row open it,
and then the row is held until a probe gets an answer). After an ambiguous failure the
pause is at least the read timeout, so a late answer lands before SAT is asked.

``get_sat_status`` (the poller, and the check before sending again):

| Estado / EstatusCancelacion                        | meaning                     |
|----------------------------------------------------|-----------------------------|
| Cancelado (any EstatusCancelacion)                 | cancelled                   |
| EstatusCancelacion "Solicitud rechazada"           | rejected by the receptor    |
| EstatusCancelacion "En proceso"                    | waiting (the receptor has 72 h) |
| anything else (Vigente, No Encontrado, an error)   | nothing requested yet / unknown |

A lookup's account or emisor error text (``judge_lookup_error``) is a Hold too; its
transport failures are outages (``judge_failure``). The poller never turns an outage into a
final state: it asks again later, with its backoff.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from worker.db import breakers
from worker.db.states import CANCELLATION_EDGES, Edge
from worker.finkok.errors import FinkokError, FinkokNotSent, normalize_code
from worker.finkok.results import CancelResult, SatStatusResult
from worker.finkok.scope import Scope, cause_of, scope_of_code, scope_of_failure
from worker.settings import Settings

ACCEPTED = frozenset({"201", "202"})

Fault = Literal["refused", "lag", "emisor", "account", "service"]

# A cancellation's codes that read differently from stamping's scope table (checked first).
CANCEL_CODES: dict[str, Fault] = {
    "205": "lag", "305": "lag", "1205": "lag", "1308": "lag",  # SAT does not know it yet
    "300": "service",  # in cancel CodEstatus: SAT's authentication service failed (Finkok
                       # tickets #17743, #41594); our bad password comes as a text (below)
    "301": "refused", "302": "refused", "303": "refused", "304": "refused",  # the signed request
}
# Texts Finkok sends instead of a code: (needle, fault, the code they stand for).
CANCEL_TEXTS: tuple[tuple[str, Fault, str], ...] = (
    ("invalid username or password", "account", "300"),
    ("el usuario o contraseña son inválidos", "account", "300"),
    ("conectar al sat", "service", "708"),
    ("no encontrado", "lag", "205"),
    ("already en buffercancellation", "lag", "205"),
    ("no tiene certificado", "emisor", "720"),
)
_BY_SCOPE: dict[Scope, Fault] = {Scope.DOCUMENT: "refused", Scope.EMISOR: "emisor",
                                 Scope.ACCOUNT: "account", Scope.SERVICE: "service"}


def fault_of(code: str, text: str = "") -> tuple[Fault, str]:
    """Who must act on one answer (a folio's EstatusUUID or a CodEstatus, with its text),
    and the code it stands for: the cancellation's overrides, then its texts, then
    stamping's scope table (``worker.finkok.scope``)."""
    code = normalize_code(code)
    if code in CANCEL_CODES:
        return CANCEL_CODES[code], code
    lowered = text.lower()
    for needle, fault, standing_for in CANCEL_TEXTS:
        if needle in lowered:
            return fault, standing_for
    return _BY_SCOPE[scope_of_code(code)], code


# --- what Finkok told us ------------------------------------------------------------------


@dataclass(frozen=True)
class Accepted:
    estatus: str  # 201 / 202
    acuse: bytes | None  # the Acuse text as UTF-8 bytes, exactly as Finkok sent it
    fecha: str | None


@dataclass(frozen=True)
class Again:
    ambiguous: bool  # the request may have reached Finkok: ask SAT before sending again
    errors: list[dict[str, str]] = field(default_factory=list)
    outage: bool = False  # Finkok or SAT unavailable (service scope): a breaker's business,
    #                       never the attempt budget's


@dataclass(frozen=True)
class Refused:
    """SAT or Finkok refused this request: cancel_failed (a person decides)."""

    errors: list[dict[str, str]]


@dataclass(frozen=True)
class Hold:
    """Not the request's fault: wait on the breaker ``key`` (account or emisor)."""

    key: str
    code: str | None
    cause: str
    errors: list[dict[str, str]]
    opens: bool  # this answer opens the breaker; False: it was open at the claim (no call)
    ambiguous: bool = False  # the request may have reached Finkok (keep must_check)


@dataclass(frozen=True)
class Found:
    """The state the check before a resend found: already cancelled, or in process."""

    state: Literal["cancelled", "in_process"]
    acuse: bytes | None
    fecha: str | None
    status: SatStatusResult | None


Verdict = Accepted | Again | Refused | Hold


def _error(code: str, message: str, kind: str) -> dict[str, str]:
    return {"code": code, "message": message[:500], "kind": kind}


def _by_fault(code: str, text: str, emisor_rfc: str, *, default: str) -> Verdict:
    fault, code = fault_of(code, text)
    message = text or default
    if fault == "refused":
        return Refused([_error(code, message, "permanent")])
    if fault == "lag":
        return Again(False, [_error(code, message, "transient")])
    if fault == "service":
        return Again(False, [_error(code, message, "outage")], outage=True)
    key = breakers.ACCOUNT_KEY if fault == "account" else breakers.emisor_key(emisor_rfc)
    cause = cause_of(code, text or None)
    return Hold(key, code, cause, [_error(code, cause, "held")], opens=True)


def judge_cancel(result: CancelResult, uuid: str, emisor_rfc: str) -> Verdict:
    """One ``cancel_signature`` answer for ``uuid`` (of ``emisor_rfc``: an emisor fault
    holds on that RFC's breaker)."""
    folio = next((f for f in result.folios if (f.uuid or "").upper() == uuid.upper()), None)
    if folio is None and result.folios:
        folio = result.folios[0]
    if folio is not None and folio.estatus_uuid:
        code = folio.estatus_uuid.strip()
        if code in ACCEPTED:
            acuse = result.acuse.encode("utf-8") if result.acuse else None
            return Accepted(code, acuse, result.fecha)
        return _by_fault(code, folio.estatus_cancelacion or "", emisor_rfc,
                         default="refused by SAT")
    status = (result.cod_estatus or "").strip()
    if not status:
        # Finkok sometimes answers an empty Folios with the Acuse still present
        if result.acuse and uuid.upper() in result.acuse.upper():
            return Accepted("201", result.acuse.encode("utf-8"), result.fecha)
        return Again(True, [_error("empty", "Finkok answered no folio and no status", "ambiguous")])
    return _by_fault(status.split()[0].rstrip(":."), status, emisor_rfc, default=status)


def judge_failure(exc: FinkokError, *, ambiguous: bool | None = None) -> Again | Hold:
    """A call that got no Finkok answer. A proxy or a wrong URL (HTTP 401/404: Finkok never
    saw it) is ours: hold on the account breaker. Anything else is the service's (an
    outage): ambiguous unless the request never left. ``ambiguous`` overrides that (a
    failed lookup teaches nothing: the row stays as unsure as it was)."""
    label = type(exc).__name__.removeprefix("Finkok").lower()
    if scope_of_failure(exc) is Scope.ACCOUNT:  # answered by something that is not Finkok
        status = getattr(exc, "status", None)
        cause = f"Finkok's URL answers HTTP {status}, not SOAP (check BILLING_FINKOK_ENVIRONMENT)"
        return Hold(breakers.ACCOUNT_KEY, f"http_{status}", cause,
                    [_error(label, f"{cause}: {exc}", "held")], opens=True,
                    ambiguous=bool(ambiguous))
    unsure = ambiguous if ambiguous is not None else not isinstance(exc, FinkokNotSent)
    return Again(unsure, [_error(label, str(exc), "outage")], outage=True)


def judge_lookup_error(text: str | None, emisor_rfc: str) -> Hold | None:
    """A lookup (``get_receipt``, ``get_sat_status``) answered with an error naming our
    account or the emisor's setup at Finkok: hold, as a ``cancel_signature`` answer would.
    None for anything else (a UUID without a receipt, SAT not knowing it yet)."""
    if not text:
        return None
    verdict = _by_fault("", text, emisor_rfc, default=text)
    return verdict if isinstance(verdict, Hold) else None


SatSays = Literal["cancelled", "rejected", "in_process", "none"]


def judge_status(result: SatStatusResult) -> SatSays:
    """SAT's word on a UUID's cancellation."""
    estado = (result.estado or "").strip().lower()
    estatus = (result.estatus_cancelacion or "").strip().lower()
    if estado == "cancelado":
        return "cancelled"
    if "rechaz" in estatus:
        return "rejected"
    if "proceso" in estatus:
        return "in_process"
    return "none"


# --- what we do about it --------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    edge: Edge
    values: dict[str, Any]
    retry_in_s: float | None = None


def decide(verdict: Verdict | Found, *, attempts: int, must_check: bool, open_key: str | None,
           settings: Settings, now: datetime, rng: random.Random | None = None) -> Decision:
    """The cancellation's next move for one send (see the table in the module docstring).

    ``attempts``: send claims so far, this one included; ``must_check``: the row's flag as
    claimed; ``open_key``: a breaker of the row's scope that is open after the verdict was
    observed (None: all closed). The values are written with the edge's state."""
    E = CANCELLATION_EDGES
    if isinstance(verdict, Found):
        values: dict[str, Any] = {
            "must_check": False, "errors": None, "acuse": verdict.acuse,
            "acuse_fecha": verdict.fecha, "hold_key": None,
            "next_attempt_at": now + timedelta(seconds=settings.cancel_poll_base_s)}
        if verdict.status is not None:
            values.update(status_values(verdict.status))
        if verdict.state == "cancelled":
            values.update(cancelled_at=now, next_attempt_at=None)
            return Decision(E["settled"], values)
        return Decision(E["sent"], values)
    if isinstance(verdict, Accepted):
        return Decision(E["sent"], {
            "must_check": False, "errors": None, "hold_key": None, "estatus_uuid": verdict.estatus,
            "acuse": verdict.acuse, "acuse_fecha": verdict.fecha,
            "next_attempt_at": now + timedelta(seconds=min(settings.cancel_poll_base_s, 5.0))})
    if isinstance(verdict, Refused):
        return Decision(E["refused"], {
            "errors": verdict.errors, "next_attempt_at": None, "must_check": False,
            "hold_key": None, "estatus_uuid": verdict.errors[0]["code"][:16] if verdict.errors
            else None})
    unsure = must_check or verdict.ambiguous
    if isinstance(verdict, Hold) or (verdict.outage and open_key is not None):
        key = verdict.key if isinstance(verdict, Hold) else open_key
        return Decision(E["hold"], {"errors": verdict.errors, "hold_key": key,
                                    "next_attempt_at": None, "must_check": unsure,
                                    "attempts": max(0, attempts - 1)})  # no attempt burned
    if not verdict.outage and attempts >= settings.cancel_max_attempts:
        return Decision(E["refused"], {"errors": verdict.errors, "next_attempt_at": None,
                                       "must_check": unsure, "hold_key": None})
    delay = send_delay_s(attempts, base_s=settings.stamp_backoff_base_s,
                         max_s=settings.stamp_backoff_max_s, rng=rng)
    if verdict.ambiguous:  # let a late answer land before asking SAT
        delay = max(delay, settings.finkok_read_timeout_s)
    values = {"errors": verdict.errors, "must_check": unsure, "hold_key": None,
              "next_attempt_at": now + timedelta(seconds=delay)}
    if verdict.outage:
        values["attempts"] = max(0, attempts - 1)  # an outage is not the document's try
    return Decision(E["retry"], values, retry_in_s=delay)


def status_values(status: SatStatusResult) -> dict[str, Any]:
    """SAT's words on the UUID, as the row keeps them."""
    return {"sat_estado": (status.estado or "")[:32] or None,
            "sat_estatus_cancelacion": (status.estatus_cancelacion or "")[:64] or None,
            "es_cancelable": (status.es_cancelable or "")[:64] or None}


def poll_delay_s(polls: int, *, base_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """Backoff between SAT status polls: doubling from ``base_s`` up to ``max_s``, with
    equal jitter (half fixed, half random), so many rows do not poll in step."""
    step: float = min(max_s, base_s * 2 ** max(0, polls))
    jitter: float = (rng or random).uniform(0, step / 2)
    return step / 2 + jitter


def send_delay_s(attempts: int, *, base_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """Backoff between sends after a transient answer (the same shape)."""
    return poll_delay_s(attempts - 1, base_s=base_s, max_s=max_s, rng=rng)
