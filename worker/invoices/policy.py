"""What one Finkok verdict means for the invoice: a pure decision, no I/O.

| verdict                                        | edge     | SIF | notes                       |
|------------------------------------------------|----------|-----|-----------------------------|
| Stamped by a fresh `stamp`                     | stamped  | OK  | Finkok delivered it to SAT  |
| Stamped by a fresh `stamp`, sif_ok_at=sat      | pending  | —   | OK once query_pending: F    |
| Stamped, recovered (307 with XML, `stamped`)   | pending  | OK  | may still be queued for SAT |
| Stamped, recovered, sif_ok_at=sat              | pending  | —   |                             |
| Refused: the document (fiscal data, seal, dup) | rejected | NOK | the document must change    |
| Hold: account/emisor fault, or breaker open    | hold     | —   | no attempt burned; resumes  |
| Expired: SAT's 72-hour window is closing       | failed   | NOK | "re-seal with a new Fecha"  |
| Unreadable: stamped, its XML does not parse    | failed   | —   | UUID kept, must check; an   |
|                                                |          |     | alarm for a person          |
| Retry, attempts left, window open              | retry    | —   | backoff, never past the     |
|                                                |          |     | window; ambiguous: at least |
|                                                |          |     | the read timeout, and must  |
|                                                |          |     | ask `stamped` first         |
| Retry, definite, window closing                | failed   | NOK | as Expired                  |
| Retry, ambiguous, attempts exhausted           | failed   | —   | cannot say "not stamped"    |
| Retry, definite, attempts exhausted            | failed   | NOK | a guard: the document keeps |
|                                                |          |     | failing, Finkok is healthy  |

An ambiguous retry is never expired here: Finkok may hold its stamp, and the next attempt
asks `stamped` first (which SAT's window does not limit); only then may it expire.

``settle`` in ``worker.invoices.stamping`` applies the decision: it takes the edge (fenced
by the lease) with the values, and writes the outbox row in the same transaction.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from worker.db.states import INVOICE_EDGES, Edge
from worker.finkok.errors import Kind
from worker.settings import Settings

# --- what Finkok told us ------------------------------------------------------------------


@dataclass(frozen=True)
class Stamped:
    uuid: str
    xml: str
    fecha: str | None
    no_certificado_sat: str | None
    pending_sat: bool = False  # Finkok holds it, not yet delivered to SAT


@dataclass(frozen=True)
class Retry:
    ambiguous: bool  # Finkok may have stamped: ask `stamped` before stamping again
    errors: list[dict[str, str]]
    failure: bool = True  # a service failure (counts toward the service breaker)


@dataclass(frozen=True)
class Refused:
    """Finkok or SAT refused the document itself: it must change (rejected, NOK)."""

    kind: Kind  # FISCAL_DATA / PERMANENT
    errors: list[dict[str, str]]


@dataclass(frozen=True)
class Hold:
    """Not the document's fault and not ours to retry blindly: wait on a breaker."""

    key: str  # the breaker (worker.db.breakers)
    code: str | None
    cause: str
    errors: list[dict[str, str]]
    answered: bool  # Finkok answered (a definite "not stamped"); False: no call was made
    opens: bool  # this answer opens the breaker (account/emisor); False: it was open


@dataclass(frozen=True)
class Unreadable:
    """Finkok stamped, but its stamped XML cannot be parsed: the stamp exists (its UUID is
    kept, so it is never stamped again) and no OK can be built from it. An alarm for a
    person, never `stamped` and never a NOK."""

    uuid: str
    xml: str
    errors: list[dict[str, str]]


@dataclass(frozen=True)
class Expired:
    """SAT's 72-hour window is closing and the document was never stamped."""

    errors: list[dict[str, str]]


Verdict = Stamped | Retry | Refused | Hold | Expired | Unreadable

WINDOW_CODE = "SAT72H"


def window_closed(cause: str | None = None) -> Expired:
    why = f" while {cause}" if cause else " while Finkok/SAT was unavailable"
    return Expired([{
        "code": WINDOW_CODE,
        "message": f"could not be stamped within SAT's 72-hour window{why}: re-seal with a "
                   "new Fecha and reprocess with --replace-xml",
        "kind": "window",
    }])


# --- what we do about it --------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    edge: Edge
    values: dict[str, Any] = field(default_factory=dict)
    outbox: Literal["OK", "NOK"] | None = None
    retry_in_s: float | None = None


def decide(verdict: Verdict, *, attempts: int, settings: Settings, now: datetime,
           deadline: datetime | None = None, rng: random.Random | None = None) -> Decision:
    """The invoice's next move for one verdict (``attempts``: claims so far, this one
    included; ``deadline``: SAT's window less the margin, None when unknown)."""
    E = INVOICE_EDGES
    closing = deadline is not None and now >= deadline
    if isinstance(verdict, Retry) and not verdict.ambiguous and closing:
        verdict = window_closed()
    if isinstance(verdict, Stamped):
        wait_for_sat = verdict.pending_sat or settings.sif_ok_at == "sat"
        return Decision(
            E["pending"] if wait_for_sat else E["stamped"],
            {"sat_uuid": verdict.uuid, "stamped_xml": verdict.xml.encode("utf-8"),
             "fecha_timbrado": verdict.fecha, "no_certificado_sat": verdict.no_certificado_sat,
             "stamped_at": now, "must_check_stamped": False, "errors": None, "error_kind": None,
             "sat_status": "S" if wait_for_sat else None,
             "next_attempt_at": now + timedelta(seconds=settings.pending_poll_interval_s)
             if wait_for_sat else None},
            outbox=None if settings.sif_ok_at == "sat" else "OK",
        )
    if isinstance(verdict, Refused):
        return Decision(E["rejected"], {"errors": verdict.errors, "error_kind": str(verdict.kind),
                                        "must_check_stamped": False, "next_attempt_at": None},
                        outbox="NOK")
    if isinstance(verdict, Unreadable):
        return Decision(E["failed"], {"sat_uuid": verdict.uuid,
                                      "stamped_xml": verdict.xml.encode("utf-8", "replace"),
                                      "errors": verdict.errors, "error_kind": "unreadable",
                                      "must_check_stamped": True, "next_attempt_at": None})
    if isinstance(verdict, Expired):
        return Decision(E["failed"], {"errors": verdict.errors, "error_kind": "window",
                                      "must_check_stamped": False, "next_attempt_at": None},
                        outbox="NOK")
    if isinstance(verdict, Hold):
        values: dict[str, Any] = {"errors": verdict.errors, "hold_key": verdict.key,
                                  "error_kind": "held", "next_attempt_at": None,
                                  "attempts": max(0, attempts - 1)}  # no attempt burned
        if verdict.answered:
            values["must_check_stamped"] = False
        return Decision(E["hold"], values)
    if attempts >= settings.stamp_max_attempts:
        if verdict.ambiguous:  # a person reprocesses (which asks `stamped` first)
            return Decision(E["failed"], {"errors": verdict.errors, "error_kind": "unknown",
                                          "must_check_stamped": True, "next_attempt_at": None})
        return Decision(E["failed"], {"errors": verdict.errors, "error_kind": "exhausted",
                                      "must_check_stamped": False, "next_attempt_at": None},
                        outbox="NOK")
    delay = retry_delay_s(attempts, settings=settings, rng=rng)
    if verdict.ambiguous:
        # A call we gave up on may still be running at Finkok. Wait at least one more read
        # timeout before asking `stamped`, so a late stamp is there to be found (else only
        # Finkok's 307 would stand between us and a second stamp).
        delay = max(delay, settings.finkok_read_timeout_s)
    if deadline is not None and not closing:  # the last try lands on the window's edge
        delay = min(delay, (deadline - now).total_seconds())
    return Decision(E["retry"], {"errors": verdict.errors,
                                 "must_check_stamped": verdict.ambiguous,
                                 "next_attempt_at": now + timedelta(seconds=delay)},
                    retry_in_s=delay)


def retry_delay_s(attempts: int, *, settings: Settings, rng: random.Random | None = None) -> float:
    """Exponential backoff with equal jitter: half the step fixed, half random."""
    step: float = min(settings.stamp_backoff_max_s,
                      settings.stamp_backoff_base_s * 2 ** max(0, attempts - 1))
    jitter: float = (rng or random).uniform(0, step / 2)
    return step / 2 + jitter


def duplicate(holder_id: str, uuid: str) -> Refused:
    """The same sealed bytes were submitted under two references and the other holds the stamp."""
    from worker.finkok.errors import classify

    return Refused(Kind.PERMANENT, [{
        "code": "DUPLICATE",
        "message": f"this CFDI was already stamped as invoice {holder_id} (UUID {uuid}); "
                   "submit a new document",
        "kind": str(classify("DUPLICATE")),
    }])
