"""What Finkok's and SAT's answers mean for a cancellation: pure decisions, no I/O.

``cancel_signature`` (one folio per request):

| answer                                                  | verdict   | edge       |
|---------------------------------------------------------|-----------|------------|
| folio 201 (request received) with the Acuse             | Accepted  | sent       |
| folio 202 (requested before: ours, an earlier try)      | Accepted  | sent       |
| folio 205, "UUID ... No Encontrado" (SAT lag), 708, 300 (SAT auth) | Again | retry |
| no answer: timeout, dropped connection, SOAP fault      | Again (ambiguous) | retry |
| not sent (connection refused)                           | Again     | retry      |
| anything else: 203, 207, 208, no_cancelable, 301-306, texts | Refused  | refused    |
| Again, attempts exhausted                               | Refused   | refused (must_check kept) |

``get_sat_status`` (the poller, and the check before sending again):

| Estado / EstatusCancelacion                        | meaning                     |
|----------------------------------------------------|-----------------------------|
| Cancelado (any EstatusCancelacion)                 | cancelled                   |
| EstatusCancelacion "Solicitud rechazada"           | rejected by the receptor    |
| EstatusCancelacion "En proceso"                    | waiting (the receptor has 72 h) |
| anything else (Vigente, No Encontrado, an error)   | nothing requested yet / unknown |
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

from worker.finkok.results import CancelResult, SatStatusResult

ACCEPTED = frozenset({"201", "202"})
TRANSIENT = frozenset({"205", "708", "300", "1205", "1308"})


@dataclass(frozen=True)
class Accepted:
    estatus: str  # 201 / 202
    acuse: bytes | None  # the Acuse text as UTF-8 bytes, exactly as Finkok sent it
    fecha: str | None


@dataclass(frozen=True)
class Again:
    ambiguous: bool  # the request may have reached Finkok: ask SAT before sending again
    errors: list[dict[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Refused:
    errors: list[dict[str, str]]


Verdict = Accepted | Again | Refused


def _error(code: str, message: str, kind: str) -> dict[str, str]:
    return {"code": code, "message": message[:500], "kind": kind}


def judge_cancel(result: CancelResult, uuid: str) -> Verdict:
    """One ``cancel_signature`` answer for ``uuid``."""
    folio = next((f for f in result.folios if (f.uuid or "").upper() == uuid.upper()), None)
    if folio is None and result.folios:
        folio = result.folios[0]
    if folio is not None and folio.estatus_uuid:
        code = folio.estatus_uuid.strip()
        text = folio.estatus_cancelacion or ""
        if code in ACCEPTED:
            acuse = result.acuse.encode("utf-8") if result.acuse else None
            return Accepted(code, acuse, result.fecha)
        if code in TRANSIENT:
            return Again(False, [_error(code, text or "SAT is not ready for it yet", "transient")])
        return Refused([_error(code, text or "refused by SAT", "permanent")])
    status = (result.cod_estatus or "").strip()
    if not status:
        # Finkok sometimes answers an empty Folios with the Acuse still present
        if result.acuse and uuid.upper() in result.acuse.upper():
            return Accepted("201", result.acuse.encode("utf-8"), result.fecha)
        return Again(True, [_error("empty", "Finkok answered no folio and no status", "ambiguous")])
    code = status.split()[0].rstrip(":.")
    if code in TRANSIENT or status.endswith("No Encontrado") or "conectar al SAT" in status:
        return Again(False, [_error(code, status, "transient")])
    return Refused([_error(code, status, "permanent")])


Settled = Literal["cancelled", "rejected", "in_process", "none"]


def judge_status(result: SatStatusResult) -> Settled:
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


def poll_delay_s(polls: int, *, base_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """Backoff between SAT status polls: doubling from ``base_s`` up to ``max_s``, with
    equal jitter (half fixed, half random), so many rows do not poll in step."""
    step: float = min(max_s, base_s * 2 ** max(0, polls))
    jitter: float = (rng or random).uniform(0, step / 2)
    return step / 2 + jitter


def send_delay_s(attempts: int, *, base_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """Backoff between sends after a transient answer (the same shape)."""
    return poll_delay_s(attempts - 1, base_s=base_s, max_s=max_s, rng=rng)
