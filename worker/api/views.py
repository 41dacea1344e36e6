"""Reading invoices for the API: rows to views, with their latest SIF notification."""

from __future__ import annotations

import re
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session, defer, sessionmaker

from worker.api.keys import ALL_EMPRESAS, Empresas
from worker.api.schemas import InvoiceError, InvoiceView, SifDelivery
from worker.db.models import Invoice, Notification

# Our invoice ids are UUID4 text; anything else cannot name an invoice (and never reaches
# the database: PostgreSQL refuses NUL bytes in text with an error, not a miss).
_ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def load_invoice(sessions: sessionmaker[Session], invoice_id: str) -> Invoice | None:
    if not _ID_RE.match(invoice_id):
        return None
    with sessions() as session:
        return session.get(Invoice, invoice_id, options=[defer(Invoice.xml)])


def view_invoice(sessions: sessionmaker[Session], invoice: Invoice) -> InvoiceView:
    (view,) = view_invoices(sessions, [invoice])
    return view


def find_invoices(
    sessions: sessionmaker[Session], reference: str, empresa_ref_ids: Empresas
) -> list[InvoiceView]:
    """Invoices with this reference among the given empresaRefIds (or all: "*")."""
    query = (
        select(Invoice)
        .options(defer(Invoice.xml), defer(Invoice.stamped_xml))
        .where(Invoice.reference == reference)
    )
    if empresa_ref_ids != ALL_EMPRESAS:
        query = query.where(Invoice.empresa_ref_id.in_(list(empresa_ref_ids)))
    with sessions() as session:
        rows = list(session.scalars(query.order_by(Invoice.empresa_ref_id)))
    return view_invoices(sessions, rows)


def view_invoices(sessions: sessionmaker[Session], invoices: Sequence[Invoice]) -> list[InvoiceView]:
    latest = _latest_notifications(sessions, [inv.id for inv in invoices])
    return [_view(inv, latest.get(inv.id)) for inv in invoices]


def _latest_notifications(
    sessions: sessionmaker[Session], invoice_ids: list[str]
) -> dict[str, Notification]:
    if not invoice_ids:
        return {}
    with sessions() as session:
        rows = session.scalars(
            select(Notification)
            .where(Notification.invoice_id.in_(invoice_ids))
            .order_by(Notification.created_at, Notification.id)
        )
        return {n.invoice_id: n for n in rows}  # the last one per invoice wins


def _view(inv: Invoice, note: Notification | None) -> InvoiceView:
    return InvoiceView(
        id=inv.id,
        empresaRefId=inv.empresa_ref_id,
        reference=inv.reference,
        pedidoga=inv.pedidoga,
        state=inv.state,
        satUuid=inv.sat_uuid,
        fechaTimbrado=inv.fecha_timbrado,
        satStatus=inv.sat_status,
        xmlVersion=inv.xml_version,
        stampAttempts=inv.attempts,
        errorKind=inv.error_kind,
        errors=[
            InvoiceError(code=e.get("code"), message=e.get("message"), kind=e.get("kind"))
            for e in inv.errors or []
        ],
        sif=None if note is None else SifDelivery(
            status=note.status,
            state=note.state,
            result=note.result,
            attempts=note.attempts,
            lastStatusCode=note.last_status_code,
            deliveredAt=note.delivered_at,
            createdAt=note.created_at,
        ),
        createdAt=inv.created_at,
        updatedAt=inv.updated_at,
        stateChangedAt=inv.state_changed_at,
        stampedAt=inv.stamped_at,
    )
