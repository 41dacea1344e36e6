"""A refused document from a producer that has no caller to read the refusal: kept, and NOK'd.

An ERP that enqueues over the broker (``billing.submit_invoice``) never sees a 422. So a
well-addressed document (valid ``empresaRefId`` and ``reference``) that intake refuses is
stored as an invoice **inserted directly in** ``rejected``, with the refusal as its error
(``errors=[{code, message, kind}]``, ``error_kind="intake"``), and its SIF outbox row (NOK)
is written in the same transaction: SIF hears why, exactly once.

Why no lifecycle edge: an edge moves an existing row from one state to another (a
compare-and-set on its state). This is an insert: the row is born in ``rejected``, the way
intake's rows are born in ``received``. From there the ordinary edges apply (``reprocess``:
a producer that sends the corrected document with ``replace`` gets it stamped).

Idempotent on ``(empresaRefId, reference)``: the insert is ``ON CONFLICT DO NOTHING``; only
the message whose insert went in writes the NOK. The same refused message twice is one
invoice and one NOK. A refused document for a pair another invoice already holds is not
stored (the pair is taken; a NOK would speak about the other invoice): it is logged.

What is stored as ``xml`` is the bytes as received, even when they are not XML (the NOK
is built from the reference, the id and the errors, never from the XML); over
``max_xml_bytes`` nothing of them is kept (their SHA-256 and size are).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from worker.cfdi.xml import CFDI_NS, parse
from worker.db.lifecycle import outbox
from worker.db.models import Invoice, new_id, utcnow
from worker.db.states import InvoiceState
from worker.invoices.intake import insert_if_free
from worker.invoices.validation import MAX_ID_LENGTH, InvoiceRefused

INTAKE_KIND = "intake"
FISCAL_DATA_KIND = "fiscal_data"  # what SIF reads as errorDatosFiscales (worker.sif.payload)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RefusedResult:
    """What happened to one refused document.

    ``stored``: this call inserted the rejected invoice and its NOK (``notification_id``);
    False with an ``invoice_id``: the pair was already held (the same refusal earlier, or
    another invoice); ``summary`` says which, for the task's result.
    """

    invoice_id: str | None
    notification_id: str | None
    stored: bool
    summary: str


def error_of(refusal: InvoiceRefused) -> dict[str, str]:
    """The invoice error for a refusal: the SAT/Finkok code it avoids when it has one (a
    receptor rule is fiscal data, as Finkok's CFDI401xx answers are), else its reason."""
    code = refusal.code or refusal.reason
    kind = FISCAL_DATA_KIND if code.startswith("CFDI401") else INTAKE_KIND
    return {"code": code, "message": refusal.message, "kind": kind}


def store_refused(
    sessions: sessionmaker[Session],
    refusal: InvoiceRefused,
    *,
    xml: bytes,
    empresa_ref_id: str,
    reference: str,
    pedidoga: str | None,
    max_xml_bytes: int,
) -> RefusedResult:
    """Insert the refused document as a ``rejected`` invoice plus its NOK outbox row, once.

    The ids must already be valid (``check_ids``); an invalid ``pedidoga`` is dropped
    (the NOK goes out without it). The caller rings ``notification_id`` after this returns
    (committed); a lost ring is the sweeper's.
    """
    now = utcnow()
    kept = xml if len(xml) <= max_xml_bytes else b""
    emisor, receptor, total = _peek(kept)
    invoice_id, xml_sha256 = new_id(), hashlib.sha256(xml).hexdigest()
    row = {
        "id": invoice_id,
        "empresa_ref_id": empresa_ref_id,
        "reference": reference,
        "pedidoga": pedidoga if pedidoga and len(pedidoga) <= MAX_ID_LENGTH else None,
        "xml": kept,
        "xml_sha256": xml_sha256,
        "xml_version": 1,
        "emisor_rfc": emisor,
        "receptor_rfc": receptor,
        "total": total,
        "state": InvoiceState.REJECTED,
        "state_changed_at": now,
        "next_attempt_at": None,  # nothing to do: rejected waits for a person or a replace
        "attempts": 0,
        "must_check_stamped": False,  # no stamp call was ever made
        "rung_at": None,
        "error_kind": INTAKE_KIND,
        "errors": [error_of(refusal)],
        "created_at": now,
        "updated_at": now,
    }
    what = f"refused {refusal.reason}"
    with sessions.begin() as session:
        if insert_if_free(session, [row]):
            notification_id = outbox(session, invoice_id, "NOK", now=now)
            return RefusedResult(invoice_id, notification_id, True,
                                 f"{what}: invoice {invoice_id} rejected, NOK queued")
        held = _holder(session, empresa_ref_id, reference)
    if held is None:  # vanished between the insert and the read: nothing was stored
        return RefusedResult(None, None, False, f"{what}: not stored ({empresa_ref_id}/{reference} busy)")
    held_id, held_sha, held_state, held_kind = held
    if held_sha == xml_sha256 and held_kind == INTAKE_KIND:
        return RefusedResult(held_id, None, False,
                             f"{what}: invoice {held_id} already rejected for it (one NOK)")
    log.warning("refused document not stored: %s/%s is held by invoice %s (%s)",
                empresa_ref_id, reference, held_id, held_state,
                extra={"invoice_id": held_id, "reference": reference,
                       "empresa_ref_id": empresa_ref_id})
    return RefusedResult(held_id, None, False,
                         f"{what}: not stored, {empresa_ref_id}/{reference} is held by "
                         f"invoice {held_id} ({held_state})")


def _holder(session: Session, empresa_ref_id: str, reference: str) -> tuple[str, str, str, str | None] | None:
    found = session.execute(
        select(Invoice.id, Invoice.xml_sha256, Invoice.state, Invoice.error_kind).where(
            Invoice.empresa_ref_id == empresa_ref_id, Invoice.reference == reference)
    ).first()
    return None if found is None else (found[0], found[1], found[2], found[3])


def _peek(xml: bytes) -> tuple[str, str, str]:
    """Emisor RFC, receptor RFC and Total when the bytes are a readable CFDI, else ""."""
    try:
        root = parse(xml) if xml else None
    except (ValueError, TypeError):
        root = None
    if root is None or root.tag != f"{{{CFDI_NS}}}Comprobante":
        return "", "", ""
    emisor = root.find(f"{{{CFDI_NS}}}Emisor")
    receptor = root.find(f"{{{CFDI_NS}}}Receptor")
    return (
        (emisor.get("Rfc", "") if emisor is not None else "")[:13],
        (receptor.get("Rfc", "") if receptor is not None else "")[:13],
        (root.get("Total") or "")[:32],
    )
