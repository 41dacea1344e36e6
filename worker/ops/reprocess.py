"""Operations' two repairs: reprocess invoices, resend SIF notifications.

Each repair is planned first (what would happen to each row, and why not), so a dry run
shows exactly what a real run does. A real run changes one row per transaction: a
compare-and-set move plus its AuditLog row, committed, then the doorbell. If publishing
fails the row is already due and the sweeper rings it; nothing is lost.

Reprocess never stamps: it moves a ``rejected``/``failed`` invoice back to ``received``
(attempts reset, due now, errors cleared) and the pipeline takes it from there. It keeps
``must_check_stamped``: if the last Finkok call went unanswered, the pipeline asks
``stamped`` before it may ``stamp``, so a stamp Finkok holds is recovered, not doubled.
``stamped`` and ``pending`` invoices hold a stamp and are refused. A ``rejected`` invoice
(a fiscal-data or permanent refusal: the document itself must change) is refused unless
the caller replaces its XML or says the same XML on purpose (:func:`same_xml_refusal`).
Every reprocess records a reason.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session, defer, sessionmaker

from worker.db.lifecycle import move
from worker.db.models import AuditLog, Invoice, Notification, utcnow
from worker.db.states import (
    INVOICE_EDGES,
    NOTIFICATION_EDGES,
    InvoiceState,
    NotificationState,
    can,
)
from worker.invoices.intake import InvoiceConflict, submit
from worker.invoices.validation import InvoiceRefused, check_cfdi
from worker.ops.filters import (
    InvoiceFilter,
    NotificationFilter,
    apply_invoice_filter,
    apply_notification_filter,
    invoice_time_column,
)
from worker.ops.queries import AmbiguousReference, InvoiceNotFound, find_invoice
from worker.ops.resend import ResendError, enqueue_resend

if TYPE_CHECKING:
    # rings the row's task after the commit; never raises
    from worker.doorbell import Bell as Publish

log = logging.getLogger(__name__)

REPROCESS_ACTION = "reprocess"
NO_REASON = "refused: a reprocess needs a reason (--reason): it is recorded in the audit log"
Progress = Callable[["ActionResult"], None]

S = InvoiceState
N = NotificationState
REPROCESS = INVOICE_EDGES["reprocess"]
RESEND = NOTIFICATION_EDGES["resend"]


@dataclass(frozen=True)
class Plan:
    """What a repair would do to one row (or why it would not)."""

    key: str  # what the operator named (or the id, for filters)
    will_change: bool
    note: str
    invoice_id: str | None = None
    notification_id: str | None = None
    reference: str | None = None
    state: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key, "invoice_id": self.invoice_id,
            "notification_id": self.notification_id, "reference": self.reference,
            "state": self.state, "will_change": self.will_change, "note": self.note,
        }


@dataclass(frozen=True)
class ActionResult:
    """What a repair did to one row."""

    plan: Plan
    done: bool
    message: str
    published: bool | None = None  # None: nothing to publish

    def as_dict(self) -> dict[str, Any]:
        return {**self.plan.as_dict(), "done": self.done, "message": self.message,
                "published": self.published}


# --- reprocess ------------------------------------------------------------------------------


def same_xml_refusal(invoice: Invoice) -> str | None:
    """Why sending this invoice's current XML to Finkok again is pointless, or None.

    A ``rejected`` invoice was refused for the document itself (fiscal data that does not
    match SAT, CFDI40143-40161, or another permanent refusal): the same bytes get the same
    answer, so it needs a corrected XML (``--replace-xml``), or ``--same-xml`` when the
    operator knows the cause was fixed elsewhere (e.g. the receptor updated SAT's records).
    A ``failed`` invoice (an account fault, exhausted transients, an unanswered call) may
    be retried with the same XML: nothing in the document was wrong.
    """
    if invoice.state != S.REJECTED:
        return None
    codes = ", ".join(str(e.get("code")) for e in invoice.errors or [] if e.get("code"))
    why = f"{invoice.error_kind or 'permanent'}{f': {codes}' if codes else ''}"
    return (f"refused: rejected ({why}): the document must change; give a corrected, re-sealed "
            "XML with --replace-xml FILE, or --same-xml to send the same XML again")


def plan_reprocess(invoice: Invoice, key: str | None = None, *, same_xml: bool = False) -> Plan:
    """What reprocessing would do; ``same_xml``: the operator accepts resending a rejected
    invoice's XML as it is (a replace-XML plan passes True: its XML is about to change)."""
    key = key or invoice.id
    base = Plan(key, False, "", invoice.id, None, invoice.reference, invoice.state)
    state = invoice.state
    refusal = None if same_xml else same_xml_refusal(invoice)
    if refusal is not None:
        return replace(base, note=refusal)
    if can(REPROCESS, state):
        note = f"{state} -> received: attempts reset, next attempt now, errors cleared"
        if invoice.must_check_stamped:
            note += "; the last Finkok call went unanswered, so it asks Finkok `stamped` first"
        return replace(base, will_change=True, note=note)
    if state == S.STAMPED:
        note = f"refused: stamped (SAT UUID {invoice.sat_uuid}); a stamped invoice is never stamped again"
    elif state == S.PENDING:
        note = (f"refused: pending, Finkok holds its stamp (SAT UUID {invoice.sat_uuid}) and is "
                "delivering it to SAT; it is never stamped again")
    else:
        note = f"refused: {state}, already in the pipeline; only rejected or failed invoices are reprocessed"
    return replace(base, note=note)


def plan_reprocess_keys(session: Session, keys: Iterable[str], *, empresa: str | None = None,
                        same_xml: bool = False) -> list[Plan]:
    """Plans for invoices named by id, SAT UUID or reference (a missing one is a refusal)."""
    plans, seen = [], set()
    for key in keys:
        try:
            invoice = find_invoice(session, key, empresa=empresa)
        except (InvoiceNotFound, AmbiguousReference) as exc:
            plans.append(Plan(key, False, f"refused: {exc}"))
            continue
        if invoice.id not in seen:  # named twice (id and reference): one plan
            seen.add(invoice.id)
            plans.append(plan_reprocess(invoice, key, same_xml=same_xml))
    return plans


def plan_reprocess_filter(session: Session, flt: InvoiceFilter, *,
                          same_xml: bool = False) -> list[Plan]:
    """Plans for every invoice matching the filter, oldest first (XML columns not loaded)."""
    stmt = apply_invoice_filter(
        select(Invoice).options(defer(Invoice.xml), defer(Invoice.stamped_xml)),
        flt, session.get_bind().dialect.name,
    )
    column = invoice_time_column(flt.by)
    return [plan_reprocess(inv, same_xml=same_xml)
            for inv in session.scalars(stmt.order_by(column, Invoice.id))]


def reprocess_invoice(
    session: Session, invoice_id: str, *, actor: str, reason: str, now: datetime | None = None,
    same_xml: bool = False,
) -> ActionResult:
    """Move one rejected/failed invoice back to received, with its audit row (caller commits).
    Refused without a reason (the audit log records why) and, for a rejected invoice,
    without ``same_xml``."""
    now = now or utcnow()
    if not reason.strip():
        plan = Plan(invoice_id, False, NO_REASON, invoice_id)
        return ActionResult(plan, False, NO_REASON)
    invoice = session.get(Invoice, invoice_id, populate_existing=True)
    if invoice is None:
        return ActionResult(Plan(invoice_id, False, "refused: no such invoice"), False,
                            "refused: no such invoice")
    plan = plan_reprocess(invoice, same_xml=same_xml)
    if not plan.will_change:
        return ActionResult(plan, False, plan.note)
    old = {
        "old_state": invoice.state, "old_errors": invoice.errors, "old_error_kind": invoice.error_kind,
        "old_attempts": invoice.attempts, "must_check_stamped": invoice.must_check_stamped,
    }
    moved = move(
        session, REPROCESS, invoice_id, now=now, attempts=0, next_attempt_at=now,
        errors=None, error_kind=None, updated_at=now,
    )
    if not moved:  # a CAS miss: someone moved it since we read it
        return ActionResult(plan, False, "refused: the invoice changed meanwhile; look again")
    session.add(AuditLog(at=now, actor=actor, action=REPROCESS_ACTION, invoice_id=invoice_id,
                         reason=reason or None, details=old))
    log.debug("reprocess %s: %s -> received by %s", invoice_id, old["old_state"], actor,
             extra={"invoice_id": invoice_id, "reference": invoice.reference})
    return ActionResult(plan, True, f"{old['old_state']} -> received")


def reprocess_many(
    sessions: sessionmaker[Session],
    invoice_ids: Iterable[str],
    *,
    actor: str,
    reason: str,
    publish: Publish | None,
    progress: Progress | None = None,
    same_xml: bool = False,
) -> list[ActionResult]:
    """One transaction per invoice, then its stamp doorbell."""
    return _each_then_ring(
        sessions, invoice_ids,
        lambda session, invoice_id: reprocess_invoice(session, invoice_id, actor=actor,
                                                      reason=reason, same_xml=same_xml),
        publish, progress,
    )


def plan_replace_xml(session: Session, invoice: Invoice, xml: bytes, *, max_xml_bytes: int,
                     key: str | None = None) -> Plan:
    """Would this corrected XML replace the invoice's and send it back to stamping?"""
    plan = plan_reprocess(invoice, key, same_xml=True)  # the XML changes: a rejection may go
    if not plan.will_change:
        return plan
    if invoice.must_check_stamped:
        return replace(plan, will_change=False, note=(
            "refused: the last Finkok call for the current XML went unanswered, so Finkok may "
            "hold a stamp for it; reprocess without --replace-xml first (it asks `stamped`)"))
    try:
        check_cfdi(xml, max_bytes=max_xml_bytes)
    except InvoiceRefused as exc:
        return replace(plan, will_change=False, note=f"refused: the new XML ({exc.reason}): {exc.message}")
    if hashlib.sha256(xml).hexdigest() == invoice.xml_sha256:
        return replace(plan, will_change=False, note=(
            "refused: the new XML is the one the invoice already has; reprocess without "
            "--replace-xml to retry it as it is"))
    return replace(plan, note=f"{invoice.state} -> received with the new XML "
                              f"(version {invoice.xml_version + 1}); attempts reset, errors cleared")


def replace_xml(
    sessions: sessionmaker[Session],
    invoice_id: str,
    xml: bytes,
    *,
    actor: str,
    reason: str,
    max_xml_bytes: int,
    publish: Publish | None,
) -> ActionResult:
    """Intake's replace path (it validates, swaps the XML, audits ``replace-xml``, publishes)."""
    with sessions() as session:
        invoice = session.get(Invoice, invoice_id)
        if invoice is None:
            plan = Plan(invoice_id, False, "refused: no such invoice")
            return ActionResult(plan, False, plan.note)
        plan = plan_replace_xml(session, invoice, xml, max_xml_bytes=max_xml_bytes)
        empresa, reference = invoice.empresa_ref_id, invoice.reference
    if not plan.will_change:
        return ActionResult(plan, False, plan.note)
    try:
        result = submit(
            sessions, xml, empresa_ref_id=empresa, reference=reference, replace=True,
            max_xml_bytes=max_xml_bytes, publish=publish, actor=actor, reason=reason or None,
        )
    except (InvoiceRefused, InvoiceConflict) as exc:
        return ActionResult(plan, False, f"refused: {exc}")
    if result.outcome != "replaced":
        return ActionResult(plan, False, f"refused: intake answered {result.outcome}")
    message = "XML replaced, -> received"
    if publish is not None and not result.published:
        message += "; the broker did not take the message, the sweeper will ring it"
    return ActionResult(plan, True, message, result.published if publish else None)


# --- resend ---------------------------------------------------------------------------------


def _latest_notification(session: Session, invoice_id: str) -> Notification | None:
    return session.scalars(
        select(Notification).where(Notification.invoice_id == invoice_id)
        .order_by(Notification.created_at.desc(), Notification.id.desc()).limit(1)
    ).first()


def resolve_notification(session: Session, key: str) -> Notification:
    """A notification id, or an invoice (id, SAT UUID, reference): its latest notification."""
    found = session.get(Notification, key.strip())
    if found is not None:
        return found
    invoice = find_invoice(session, key)
    latest = _latest_notification(session, invoice.id)
    if latest is None:
        raise InvoiceNotFound(f"invoice {invoice.id} has no SIF notification yet")
    return latest


def plan_resend(session: Session, notification: Notification, key: str | None = None) -> Plan:
    invoice = session.get(Invoice, notification.invoice_id)
    base = Plan(key or notification.id, False, "", notification.invoice_id, notification.id,
                invoice.reference if invoice else None, notification.state)
    what = f"{notification.status} notification"
    if not can(RESEND, notification.state):
        return replace(base, note=f"refused: {what} is {notification.state}, it is already queued "
                                  "to be sent")
    latest = _latest_notification(session, notification.invoice_id)
    if latest is not None and latest.id != notification.id:
        return replace(base, note=(
            f"refused: superseded by {latest.status} notification {latest.id} of the same "
            "invoice; resending this one would report an old outcome"))
    if invoice is not None and notification.status == "NOK" and not can(REPROCESS, invoice.state):
        return replace(base, note=(
            f"refused: the invoice is now {invoice.state}; this NOK no longer says its outcome"))
    last = f" (last result {notification.result})" if notification.result else ""
    return replace(base, will_change=True,
                   note=f"{what} {notification.state}{last} -> queued, sent again to SIF")


def plan_resend_keys(session: Session, keys: Iterable[str]) -> list[Plan]:
    plans, seen = [], set()
    for key in keys:
        try:
            notification = resolve_notification(session, key)
        except (InvoiceNotFound, AmbiguousReference) as exc:
            plans.append(Plan(key, False, f"refused: {exc}"))
            continue
        if notification.id not in seen:
            seen.add(notification.id)
            plans.append(plan_resend(session, notification, key))
    return plans


def matching_notifications(session: Session, flt: NotificationFilter) -> list[Notification]:
    """Notifications matching the filter, oldest change first."""
    stmt = apply_notification_filter(select(Notification), flt)
    return list(session.scalars(stmt.order_by(Notification.state_changed_at, Notification.id)))


def plan_resend_filter(session: Session, flt: NotificationFilter) -> list[Plan]:
    return [plan_resend(session, n) for n in matching_notifications(session, flt)]


def resend_many(
    sessions: sessionmaker[Session],
    notification_ids: Iterable[str],
    *,
    actor: str,
    reason: str,
    publish: Publish | None,
    progress: Progress | None = None,
) -> list[ActionResult]:
    """Re-check each plan in its own transaction, enqueue_resend (audited), then publish."""
    return _each_then_ring(
        sessions, notification_ids,
        lambda session, notification_id: _resend_one(session, notification_id, actor=actor,
                                                     reason=reason),
        publish, progress,
    )


def _each_then_ring(
    sessions: sessionmaker[Session],
    ids: Iterable[str],
    act: Callable[[Session, str], ActionResult],
    publish: Publish | None,
    progress: Progress | None,
) -> list[ActionResult]:
    """``act`` on each id in its own transaction; after each commit, ring its doorbell."""
    results = []
    for row_id in ids:
        with sessions.begin() as session:
            result = act(session, row_id)
        if result.done:
            result = _ring(result, row_id, publish)
        results.append(result)
        if progress:
            progress(result)
    return results


def _resend_one(session: Session, notification_id: str, *, actor: str, reason: str) -> ActionResult:
    notification = session.get(Notification, notification_id, populate_existing=True)
    if notification is None:
        plan = Plan(notification_id, False, "refused: no such notification")
        return ActionResult(plan, False, plan.note)
    plan = plan_resend(session, notification)
    if not plan.will_change:
        return ActionResult(plan, False, plan.note)
    try:
        enqueue_resend(session, notification_id, actor=actor, reason=reason)
    except ResendError as exc:
        return ActionResult(plan, False, f"refused: {exc}")
    return ActionResult(plan, True, f"{plan.state} -> queued")


def _ring(result: ActionResult, row_id: str, publish: Publish | None) -> ActionResult:
    if publish is None:
        return result
    if publish(row_id, reference=result.plan.reference):
        return replace(result, published=True)
    # committed and due: the sweeper rings it
    return replace(result, published=False, message=result.message
                   + "; the broker refused the message, the sweeper will ring it")
