"""Finding invoices and telling everything about one: plain functions over a session."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from worker.db.models import AuditLog, Breaker, Invoice, Notification
from worker.ops.filters import InvoiceFilter, apply_invoice_filter, invoice_time_column

_ID_PREFIX = re.compile(r"^[0-9a-fA-F]{8}[0-9a-fA-F-]{0,27}$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class InvoiceNotFound(LookupError):
    pass


class AmbiguousReference(LookupError):
    """A reference (or id prefix) that names several invoices: say which."""

    def __init__(self, reference: str, candidates: list[tuple[str, str]]) -> None:
        self.candidates = candidates  # (invoice id, empresaRefId)
        listed = ", ".join(f"{iid} (empresa {emp})" for iid, emp in candidates)
        super().__init__(
            f"{reference!r} is held by {len(candidates)} invoices: {listed}; "
            "give the full invoice id or --empresa"
        )


@dataclass(frozen=True)
class InvoiceRow:
    """One line of `billing invoices list`."""

    id: str
    empresa_ref_id: str
    reference: str
    pedidoga: str | None
    state: str
    emisor_rfc: str
    receptor_rfc: str
    total: str
    sat_uuid: str | None
    attempts: int
    created_at: datetime
    state_changed_at: datetime
    error_codes: list[str]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def list_invoices(
    session: Session, flt: InvoiceFilter, *, limit: int = 50, offset: int = 0
) -> list[InvoiceRow]:
    """Matching invoices, newest first (by the filter's time field), one page."""
    column = invoice_time_column(flt.by)
    stmt = apply_invoice_filter(
        select(
            Invoice.id, Invoice.empresa_ref_id, Invoice.reference, Invoice.pedidoga,
            Invoice.state, Invoice.emisor_rfc, Invoice.receptor_rfc, Invoice.total,
            Invoice.sat_uuid, Invoice.attempts, Invoice.created_at, Invoice.state_changed_at,
            Invoice.errors,
        ),
        flt,
        _dialect(session),
    )
    stmt = stmt.order_by(column.desc(), Invoice.id.desc()).limit(limit).offset(offset)
    rows = []
    for r in session.execute(stmt):
        codes = [str(e.get("code", "?")) for e in (r.errors or []) if isinstance(e, dict)]
        rows.append(InvoiceRow(
            r.id, r.empresa_ref_id, r.reference, r.pedidoga, r.state, r.emisor_rfc,
            r.receptor_rfc, r.total, r.sat_uuid, r.attempts, r.created_at,
            r.state_changed_at, codes,
        ))
    return rows


def count_invoices(session: Session, flt: InvoiceFilter) -> int:
    stmt = apply_invoice_filter(select(func.count()).select_from(Invoice), flt, _dialect(session))
    return int(session.scalar(stmt) or 0)


def matching_ids(session: Session, flt: InvoiceFilter) -> list[str]:
    """Every matching invoice id, oldest first (the order bulk actions work in)."""
    column = invoice_time_column(flt.by)
    stmt = apply_invoice_filter(select(Invoice.id), flt, _dialect(session))
    return list(session.scalars(stmt.order_by(column.asc(), Invoice.id.asc())))


def find_invoice(session: Session, key: str, *, empresa: str | None = None) -> Invoice:
    """An invoice by our id, its SAT UUID, its reference (unique with ``empresa``), or the
    first 8+ characters of our id."""
    key = key.strip()
    if _UUID.match(key):
        found = session.get(Invoice, key.lower()) or session.get(Invoice, key)
        if found is not None:
            return found
        found = session.scalars(select(Invoice).where(Invoice.sat_uuid == key.upper())).first()
        if found is not None:
            return found
    stmt = select(Invoice).where(Invoice.reference == key)
    if empresa:
        stmt = stmt.where(Invoice.empresa_ref_id == empresa)
    matches = list(session.scalars(stmt.limit(20)))
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise AmbiguousReference(key, [(m.id, m.empresa_ref_id) for m in matches])
    if _ID_PREFIX.match(key):  # the short id `invoices list` prints
        stmt = select(Invoice).where(Invoice.id.startswith(key.lower(), autoescape=True))
        if empresa:
            stmt = stmt.where(Invoice.empresa_ref_id == empresa)
        matches = list(session.scalars(stmt.limit(20)))
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise AmbiguousReference(key, [(m.id, m.empresa_ref_id) for m in matches])
    where = f" in empresa {empresa}" if empresa else ""
    raise InvoiceNotFound(f"no invoice with id, SAT UUID or reference {key!r}{where}")


def invoice_detail(session: Session, invoice_id: str) -> dict[str, Any]:
    """Everything about one invoice (datetimes as datetime; no XML bytes)."""
    invoice = session.scalars(
        select(Invoice)
        .where(Invoice.id == invoice_id)
        .options(
            selectinload(Invoice.stamp_attempts),
            selectinload(Invoice.notifications).selectinload(Notification.deliveries),
        )
    ).one()
    audit = session.scalars(
        select(AuditLog).where(AuditLog.invoice_id == invoice_id).order_by(AuditLog.id)
    )
    breaker = session.get(Breaker, invoice.hold_key) if invoice.hold_key else None
    return {
        "id": invoice.id,
        "empresa_ref_id": invoice.empresa_ref_id,
        "reference": invoice.reference,
        "pedidoga": invoice.pedidoga,
        "emisor_rfc": invoice.emisor_rfc,
        "receptor_rfc": invoice.receptor_rfc,
        "total": invoice.total,
        "xml_sha256": invoice.xml_sha256,
        "xml_version": invoice.xml_version,
        "xml_bytes": len(invoice.xml),
        "state": invoice.state,
        "attempts": invoice.attempts,
        "must_check_stamped": invoice.must_check_stamped,
        "created_at": invoice.created_at,
        "state_changed_at": invoice.state_changed_at,
        "updated_at": invoice.updated_at,
        "stamped_at": invoice.stamped_at,
        "next_attempt_at": invoice.next_attempt_at,
        "lease_owner": invoice.lease_owner,
        "lease_expires_at": invoice.lease_expires_at,
        "sat_uuid": invoice.sat_uuid,
        "sat_status": invoice.sat_status,
        "fecha_timbrado": invoice.fecha_timbrado,
        "no_certificado_sat": invoice.no_certificado_sat,
        "stamped_xml_bytes": len(invoice.stamped_xml) if invoice.stamped_xml else None,
        "error_kind": invoice.error_kind,
        "errors": list(invoice.errors or []),
        # While held: the breaker it waits on, and why ("held: Finkok account out of credits
        # since 03:12"); it resumes by itself when the breaker closes.
        "held": None if invoice.state != "held" else {
            "breaker": invoice.hold_key,
            "cause": breaker.cause if breaker else None,
            "since": breaker.opened_at if breaker else invoice.state_changed_at,
            "breaker_state": breaker.state if breaker else "closed",
        },
        "stamp_deadline_at": invoice.stamp_deadline_at,
        "stamp_attempts": [
            {
                "id": a.id, "operation": a.operation, "started_at": a.started_at,
                "duration_ms": a.duration_ms, "outcome": a.outcome, "codes": list(a.codes or []),
                "message": a.message, "worker": a.worker,
            }
            for a in invoice.stamp_attempts
        ],
        "notifications": [
            {
                "id": n.id, "status": n.status, "state": n.state, "result": n.result,
                "attempts": n.attempts, "last_status_code": n.last_status_code,
                "created_at": n.created_at, "state_changed_at": n.state_changed_at,
                "next_attempt_at": n.next_attempt_at, "delivered_at": n.delivered_at,
                "lease_owner": n.lease_owner, "lease_expires_at": n.lease_expires_at,
                "deliveries": [
                    {
                        "id": d.id, "started_at": d.started_at, "duration_ms": d.duration_ms,
                        "status_code": d.status_code, "error": d.error,
                        "response_body": (d.response_body or "")[:500] or None,
                        "worker": d.worker,
                    }
                    for d in n.deliveries
                ],
            }
            for n in invoice.notifications
        ],
        "audit": [
            {
                "at": a.at, "actor": a.actor, "action": a.action, "reason": a.reason,
                "notification_id": a.notification_id, "details": a.details,
            }
            for a in audit
        ],
    }


def stamped_xml(session: Session, invoice_id: str) -> bytes | None:
    """Finkok's stamped XML, the exact bytes stored."""
    return session.scalar(select(Invoice.stamped_xml).where(Invoice.id == invoice_id))


def jsonable(value: Any) -> Any:
    """json.dumps ``default``: datetimes as ISO 8601."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
