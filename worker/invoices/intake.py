"""Intake: validate sealed CFDIs, store each once, then ring the doorbell.

The same (empresaRefId, reference) with the same bytes is the same invoice: submitting it
again returns the stored one and publishes nothing. Different bytes are a conflict,
unless the stored invoice was rejected/failed and the caller asks to replace it.

Rows are written with ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` (one round trip;
a concurrent duplicate simply loses the insert and is then compared with the winner).
The stamp task is published only after the commit. If publishing fails (broker down),
the committed row is already due (``next_attempt_at``) and the sweeper publishes it
later: an accepted invoice is never lost.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import and_, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from worker.cfdi.window import stamp_deadline
from worker.db.lifecycle import move
from worker.db.models import AuditLog, Invoice, new_id, utcnow
from worker.db.states import INVOICE_EDGES, InvoiceState, can
from worker.invoices.validation import (
    Checks,
    InvoiceRefused,
    check_cfdi,
    check_ids,
    strip_bom,
)

if TYPE_CHECKING:
    # rings the row's task after the commit; never raises
    from worker.doorbell import Bell as Publish

log = logging.getLogger(__name__)

DEFAULT_MAX_XML_BYTES = 2 * 1024 * 1024


class InvoiceConflict(Exception):
    """The (empresaRefId, reference) is held by an invoice with other bytes."""

    def __init__(self, invoice_id: str, state: str, message: str) -> None:
        super().__init__(message)
        self.invoice_id = invoice_id
        self.state = state


@dataclass(frozen=True, slots=True)
class Submission:
    xml: bytes
    empresa_ref_id: str
    reference: str
    pedidoga: str | None = None


@dataclass(frozen=True, slots=True)
class SubmitResult:
    invoice_id: str
    outcome: Literal["created", "existing", "replaced"]
    state: str
    published: bool


# What submit_many returns for each submission, in order.
ItemResult = SubmitResult | InvoiceRefused | InvoiceConflict


def submit(
    sessions: sessionmaker[Session],
    xml: bytes,
    *,
    empresa_ref_id: str,
    reference: str,
    pedidoga: str | None = None,
    replace: bool = False,
    max_xml_bytes: int = DEFAULT_MAX_XML_BYTES,
    publish: Publish | None = None,
    actor: str = "intake",
    reason: str | None = None,
    checks: Checks = "strict",
) -> SubmitResult:
    """Validate, store and queue one sealed CFDI 4.0. Raises InvoiceRefused/InvoiceConflict.

    ``checks`` is ``BILLING_INTAKE_CHECKS`` (strict, lenient, off: the pre-flight checks)."""
    (result,) = submit_many(
        sessions,
        [Submission(xml, empresa_ref_id, reference, pedidoga)],
        replace=replace,
        max_xml_bytes=max_xml_bytes,
        publish=publish,
        actor=actor,
        reason=reason,
        checks=checks,
    )
    if isinstance(result, Exception):
        raise result
    return result


def submit_many(
    sessions: sessionmaker[Session],
    items: Sequence[Submission],
    *,
    replace: bool = False,
    max_xml_bytes: int = DEFAULT_MAX_XML_BYTES,
    publish: Publish | None = None,
    actor: str = "intake",
    reason: str | None = None,
    checks: Checks = "strict",
) -> list[ItemResult]:
    """Validate and store many submissions in one transaction; a refusal is per item.

    What the pre-flight checks left on record for a new invoice (a check skipped, a
    lenient finding) is an audit row ``intake-checks`` in the same transaction."""
    results: list[ItemResult | None] = [None] * len(items)
    rows: dict[int, dict[str, Any]] = {}
    notes: dict[int, dict[str, str]] = {}
    for i, item in enumerate(items):
        try:
            rows[i], notes[i] = _row(item, max_xml_bytes, checks)
        except InvoiceRefused as exc:
            results[i] = exc

    if rows:
        with sessions.begin() as session:
            inserted = insert_if_free(session, list(rows.values()))
            taken = {i for i, row in rows.items() if row["id"] in inserted}
            for i in taken:
                results[i] = SubmitResult(rows[i]["id"], "created", InvoiceState.RECEIVED, False)
                if notes[i]:
                    session.add(AuditLog(actor=actor, action="intake-checks",
                                         invoice_id=rows[i]["id"], details=notes[i]))
            rest = [i for i in rows if i not in taken]
            if rest:
                existing = _find_many(session, [rows[i] for i in rest])
                for i in rest:
                    key = (rows[i]["empresa_ref_id"], rows[i]["reference"])
                    try:
                        results[i] = _resubmit(
                            session, existing[key], rows[i], replace, actor, reason
                        )
                    except InvoiceConflict as exc:
                        results[i] = exc

    done: list[ItemResult] = [r for r in results if r is not None]
    assert len(done) == len(items)
    return [_publish(r, item.reference, publish) for r, item in zip(done, items, strict=True)]


def _row(item: Submission, max_xml_bytes: int, checks: Checks) -> tuple[dict[str, Any], dict[str, str]]:
    check_ids(item.empresa_ref_id, item.reference, item.pedidoga)
    xml = strip_bom(item.xml)  # a UTF-8 BOM is not part of the document (see strip_bom)
    checked = check_cfdi(xml, max_bytes=max_xml_bytes, checks=checks)
    now = utcnow()
    return {
        "id": new_id(),
        "empresa_ref_id": item.empresa_ref_id,
        "reference": item.reference,
        "pedidoga": item.pedidoga,
        "xml": xml,
        "xml_sha256": hashlib.sha256(xml).hexdigest(),
        "xml_version": 1,
        "emisor_rfc": checked.emisor_rfc,
        "receptor_rfc": checked.receptor_rfc,
        "total": checked.total,
        "stamp_deadline_at": stamp_deadline(checked.fecha),
        "state": InvoiceState.RECEIVED,
        "state_changed_at": now,
        "next_attempt_at": now,
        "attempts": 0,
        "must_check_stamped": False,
        # Intake rings the doorbell itself right after the commit; the sweeper only steps in
        # if that doorbell is still unanswered sweep_rering_after_s later.
        "rung_at": now,
        "created_at": now,
        "updated_at": now,
    }, checked.notes


def insert_if_free(session: Session, rows: list[dict[str, Any]]) -> set[str]:
    """Insert the rows whose (empresa, reference) is free; return the ids that went in."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    # One cached statement executed with many parameter sets (SQLAlchemy batches it into
    # multi-row INSERT ... RETURNING under the hood: "insertmanyvalues").
    stmt = (
        insert(Invoice.__table__)
        .on_conflict_do_nothing(index_elements=["empresa_ref_id", "reference"])
        .returning(Invoice.__table__.c.id)
    )
    return set(session.connection().execute(stmt, rows).scalars())


def _find_many(session: Session, rows: list[dict[str, Any]]) -> dict[tuple[str, str], Invoice]:
    keys = {(r["empresa_ref_id"], r["reference"]) for r in rows}
    found = session.scalars(
        select(Invoice).where(
            or_(*(and_(Invoice.empresa_ref_id == e, Invoice.reference == r) for e, r in keys))
        )
    )
    return {(inv.empresa_ref_id, inv.reference): inv for inv in found}


def _resubmit(
    session: Session,
    existing: Invoice,
    row: dict[str, Any],
    replace: bool,
    actor: str,
    reason: str | None,
) -> SubmitResult:
    if existing.xml_sha256 == row["xml_sha256"]:
        return SubmitResult(existing.id, "existing", existing.state, published=False)

    where = f"{existing.empresa_ref_id}/{existing.reference}"
    if not replace:
        raise InvoiceConflict(
            existing.id,
            existing.state,
            f"{where} is already held by invoice {existing.id} ({existing.state}) with a "
            "different XML; to correct a rejected or failed invoice, submit with replace",
        )
    if not can(INVOICE_EDGES["reprocess"], existing.state):
        raise InvoiceConflict(
            existing.id,
            existing.state,
            f"{where}: invoice {existing.id} is {existing.state}; only rejected or failed "
            "invoices can be replaced",
        )
    if existing.must_check_stamped:
        # The old bytes may hold a stamp we never heard of: stamping new bytes could make a
        # second fiscal document. Reprocess first (it asks Finkok `stamped`).
        raise InvoiceConflict(
            existing.id,
            existing.state,
            f"{where}: invoice {existing.id} ended after an unanswered stamp call, so Finkok "
            "may hold a stamp for the current XML; reprocess it before replacing the XML",
        )
    now = utcnow()
    moved = move(
        session,
        INVOICE_EDGES["reprocess"],
        existing.id,
        now=now,
        xml=row["xml"],
        xml_sha256=row["xml_sha256"],
        xml_version=Invoice.xml_version + 1,
        emisor_rfc=row["emisor_rfc"],
        receptor_rfc=row["receptor_rfc"],
        total=row["total"],
        stamp_deadline_at=row["stamp_deadline_at"],
        pedidoga=row["pedidoga"] if row["pedidoga"] is not None else existing.pedidoga,
        attempts=0,
        next_attempt_at=now,
        error_kind=None,
        errors=None,
        updated_at=now,
    )
    if not moved:  # changed under us since we read it
        raise InvoiceConflict(existing.id, existing.state, f"{where}: invoice changed, try again")
    session.add(
        AuditLog(
            actor=actor,
            action="replace-xml",
            invoice_id=existing.id,
            reason=reason,
            details={
                "old_sha256": existing.xml_sha256,
                "new_sha256": row["xml_sha256"],
                "old_state": existing.state,
            },
        )
    )
    return SubmitResult(existing.id, "replaced", InvoiceState.RECEIVED, published=False)


def _publish(result: ItemResult, reference: str, publish: Publish | None) -> ItemResult:
    """Ring the committed row's doorbell; a ring the broker refused is left to the sweeper
    (the row is committed and due), and the result says it was not published."""
    if not isinstance(result, SubmitResult) or result.outcome == "existing" or publish is None:
        return result
    rang = publish(result.invoice_id, reference=reference)
    return SubmitResult(result.invoice_id, result.outcome, result.state, published=rang)


__all__ = [
    "InvoiceConflict",
    "InvoiceRefused",
    "ItemResult",
    "Submission",
    "SubmitResult",
    "submit",
    "submit_many",
]
