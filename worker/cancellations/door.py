"""The one way in: ``request_cancellation`` (the CLI, the HTTP API and the broker task).

Checks, before anything is stored (each refusal names its reason):

* the invoice exists (id, SAT UUID or reference) and holds a stamp (``stamped``/``pending``);
* the motivo is SAT's (01-04); ``01`` needs a substitute that is **an invoice of ours,
  stamped, of the same emisor** (SAT would otherwise cancel a CFDI for a replacement that
  does not exist); the others take none;
* a CSD is configured to sign for the emisor (``cancel_csds``);
* a reason (it goes to the audit log).

Idempotent: one cancellation row per invoice. The same request again (same motivo and
substitute) returns the row as it is; another motivo while one is under way (``held``
during an outage included) is a conflict;
after ``cancel_rejected``/``cancel_failed`` a request moves the row back to ``requested``
(``rerequest``). Each change is one transaction with its audit row; the caller rings
``billing.send_cancellation`` after the commit (``CancelOutcome.ring``). ``dry_run`` plans
and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from worker.cancellations.csds import has_csd
from worker.cfdi.cancellation import MOTIVOS, CancelRequestError, check_request
from worker.db.lifecycle import move
from worker.db.models import AuditLog, Cancellation, Invoice, utcnow
from worker.db.states import CANCELLATION_EDGES, CancellationState, InvoiceState
from worker.ops.queries import AmbiguousReference, InvoiceNotFound, find_invoice

ACTION = "cancel"
STAMPED = (InvoiceState.STAMPED, InvoiceState.PENDING)
ACTIVE = (CancellationState.REQUESTED, CancellationState.SENDING, CancellationState.IN_PROCESS,
          CancellationState.HELD, CancellationState.CANCELLED)

Status = Literal["created", "existing", "rerequested", "would_create", "would_rerequest"]


class CancelRefused(ValueError):
    """Refused at the door; ``reason`` is a stable word, ``status`` the HTTP status."""

    def __init__(self, reason: str, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class CancelOutcome:
    status: Status
    invoice_id: str
    cancellation_id: str | None
    state: str | None
    motivo: str
    folio_sustitucion: str | None

    @property
    def ring(self) -> bool:
        """Ring ``billing.send_cancellation`` after the commit."""
        return self.status in ("created", "rerequested")

    @property
    def summary(self) -> str:
        return f"{self.status} {self.cancellation_id or self.invoice_id}"

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "invoiceId": self.invoice_id,
                "cancellationId": self.cancellation_id, "state": self.state,
                "motivo": self.motivo, "folioSustitucion": self.folio_sustitucion}


def resolve(session: Session, key: str, *, empresa: str | None = None) -> Invoice:
    try:
        return find_invoice(session, key, empresa=empresa)
    except InvoiceNotFound as exc:
        raise CancelRefused("not_found", str(exc), 404) from None
    except AmbiguousReference as exc:
        raise CancelRefused("ambiguous", str(exc), 409) from None


def _check(session: Session, invoice: Invoice, motivo: str, substitute: str | None,
           cancel_csds: dict[str, Any]) -> str | None:
    if invoice.state not in STAMPED or not invoice.sat_uuid:
        raise CancelRefused("not_stamped", f"invoice {invoice.id} is {invoice.state}: only a "
                            "stamped invoice can be cancelled", 409)
    try:
        check_request(invoice.sat_uuid, motivo, substitute)
    except CancelRequestError as exc:
        raise CancelRefused("motivo", str(exc)) from None
    if substitute:
        substitute = substitute.strip().upper()
        other = session.scalars(select(Invoice).where(Invoice.sat_uuid == substitute)).first()
        if other is None:
            raise CancelRefused("substitute_missing", f"the substitute {substitute} is not an "
                                "invoice of ours (motivo 01 needs the stamped CFDI that replaces it)")
        if other.state not in STAMPED:
            raise CancelRefused("substitute_unstamped", f"the substitute {substitute} (invoice "
                                f"{other.id}) is {other.state}, not stamped")
        gone = cancellation_of(session, other.id)
        if gone is not None and gone.state in ACTIVE:
            raise CancelRefused("substitute_cancelled", f"the substitute {substitute} is itself "
                                f"being cancelled ({gone.state})")
        if other.emisor_rfc.upper() != invoice.emisor_rfc.upper():
            raise CancelRefused("substitute_emisor", f"the substitute {substitute} is "
                                f"{other.emisor_rfc}'s, not {invoice.emisor_rfc}'s")
    if not has_csd(cancel_csds, invoice.emisor_rfc):
        raise CancelRefused("no_csd", f"no CSD configured to sign cancellations for "
                            f"{invoice.emisor_rfc} (set BILLING_CANCEL_CSDS)")
    return substitute


def request_cancellation(
    sessions: sessionmaker[Session],
    cancel_csds: dict[str, Any],
    key: str,
    *,
    motivo: str,
    substitute: str | None = None,
    reason: str,
    actor: str,
    empresa: str | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
) -> CancelOutcome:
    """Plan (and unless ``dry_run``, store) the cancellation of one invoice. Raises
    :class:`CancelRefused`; see the module docstring."""
    now = now or utcnow()
    motivo = (motivo or "").strip()
    if motivo not in MOTIVOS:
        raise CancelRefused("motivo", f"motivo {motivo!r} is not one of SAT's 01, 02, 03, 04")
    if not (reason or "").strip():
        raise CancelRefused("no_reason", "a cancellation needs a reason: it is recorded in the audit log")
    with sessions.begin() as session:
        invoice = resolve(session, key, empresa=empresa)
        substitute = _check(session, invoice, motivo, substitute or None, cancel_csds)
        row = session.scalars(select(Cancellation).where(Cancellation.invoice_id == invoice.id)
                              .with_for_update()).first()
        if row is not None and row.state in ACTIVE:
            if (row.motivo, row.folio_sustitucion) != (motivo, substitute):
                raise CancelRefused("conflict", f"invoice {invoice.id} already has a cancellation "
                                    f"(motivo {row.motivo}) that is {row.state}", 409)
            return CancelOutcome("existing", invoice.id, row.id, row.state, motivo, substitute)
        if dry_run:
            status: Status = "would_rerequest" if row is not None else "would_create"
            return CancelOutcome(status, invoice.id, row.id if row else None,
                                 row.state if row else None, motivo, substitute)
        details: dict[str, Any] = {"motivo": motivo, "folio_sustitucion": substitute,
                                   "sat_uuid": invoice.sat_uuid}
        fields: dict[str, Any] = dict(motivo=motivo, folio_sustitucion=substitute, reason=reason.strip(),
                      requested_by=actor, next_attempt_at=now, attempts=0, polls=0, errors=None,
                      updated_at=now)
        if row is None:
            row = Cancellation(invoice_id=invoice.id, sat_uuid=invoice.sat_uuid,
                               emisor_rfc=invoice.emisor_rfc, receptor_rfc=invoice.receptor_rfc,
                               total=invoice.total, state=CancellationState.REQUESTED,
                               state_changed_at=now, created_at=now, must_check=False, **fields)
            session.add(row)
            session.flush()
            status = "created"
        else:
            details["old_state"] = row.state
            details["old_errors"] = row.errors
            if not move(session, CANCELLATION_EDGES["rerequest"], row.id, now=now, **fields):
                raise CancelRefused("conflict", "the cancellation changed meanwhile; look again", 409)
            status = "rerequested"
        details["cancellation_id"] = row.id
        session.add(AuditLog(at=now, actor=actor, action=ACTION, invoice_id=invoice.id,
                             reason=reason.strip(), details=details))
        return CancelOutcome(status, invoice.id, row.id, CancellationState.REQUESTED, motivo,
                             substitute)


def cancellation_of(session: Session, invoice_id: str) -> Cancellation | None:
    return session.scalars(select(Cancellation).where(Cancellation.invoice_id == invoice_id)).first()


def describe(row: Cancellation) -> dict[str, Any]:
    """A cancellation for people and the API (the acuse itself is fetched on its own)."""
    return {
        "id": row.id, "invoiceId": row.invoice_id, "uuid": row.sat_uuid, "state": row.state,
        "motivo": row.motivo, "folioSustitucion": row.folio_sustitucion, "reason": row.reason,
        "requestedBy": row.requested_by, "estatusUuid": row.estatus_uuid,
        "satEstado": row.sat_estado, "satEstatusCancelacion": row.sat_estatus_cancelacion,
        "esCancelable": row.es_cancelable, "attempts": row.attempts, "polls": row.polls,
        "hasAcuse": row.acuse is not None, "acuseFecha": row.acuse_fecha, "errors": row.errors,
        "holdKey": row.hold_key,
        "nextAttemptAt": _iso(row.next_attempt_at), "cancelledAt": _iso(row.cancelled_at),
        "createdAt": _iso(row.created_at), "updatedAt": _iso(row.updated_at),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
