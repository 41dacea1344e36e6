"""Adoption: take an orphan stamp Finkok holds as the stamp of the invoice it was made from.

Reconciliation (``worker.ops.reconcile``) finds the orphan and matches it to an invoice by
the sealed document inside it; this module plans and acts, like the other repairs: each
adoption is one transaction (the ``adopt`` move with the stamp's UUID, XML, FechaTimbrado
and NoCertificadoSAT, the SIF OK written by ``outbox()``, an AuditLog row with the old
state and errors), committed, then the notify doorbell rung (if the broker is down, the
sweeper rings the notification).

Which states ``adopt`` leaves (``worker.db.states``), and why each is safe:

* ``failed``, ``rejected``: terminal until a person acts; no worker holds them. Finkok
  holding a stamp for exactly this sealed document means the document *is* stamped, at SAT
  too (another system stamped it, or the answer to our call was lost). The OK supersedes
  the NOK SIF may have heard. A replaced XML does not match the old stamp, so a corrected
  invoice is never given its predecessor's UUID.
* ``received``, ``retry_wait``: waiting for a worker, no lease held. A worker's claim is a
  compare-and-set from these same states, so claim and adopt exclude each other: if the
  claim wins, this adoption misses its CAS and says "changed meanwhile"; if the adoption
  wins, the claim finds no due row. (Had the worker stamped, Finkok would answer 307 with
  this very UUID anyway.)
* not ``stamping``: a worker holds the lease and its call may be in flight; its fenced
  settle is the one to write the outcome (the next reconciliation sees what it did).
* not ``pending``/``stamped``: the invoice holds a stamp already; a second UUID for the
  same document is a double stamp to report, never to adopt.
* ``held`` (parked while a Finkok breaker is open): for the same reason as ``retry_wait``:
  no lease is held, and a release is a compare-and-set from it.

Before moving, the invoice is read again and the stamp checked once more: it is still
in an adoptable state and holds no UUID, the stamped XML's TFD names the orphan's UUID, and
its sealed document is the invoice's. The move is guarded like a settle: it does not apply
while another invoice holds that UUID.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import exists
from sqlalchemy.orm import Session, aliased, sessionmaker

from worker.cfdi.sealed import NotACfdi, sealed_digest
from worker.cfdi.tfd import find_tfd
from worker.cfdi.xml import UnsafeXmlError, parse
from worker.db.lifecycle import move, outbox
from worker.db.models import AuditLog, Invoice, utcnow
from worker.db.states import INVOICE_EDGES
from worker.ops.reconcile import Orphan
from worker.ops.reprocess import ActionResult, Plan

if TYPE_CHECKING:
    from worker.doorbell import Bell

log = logging.getLogger(__name__)

ADOPT = INVOICE_EDGES["adopt"]
ADOPT_ACTION = "adopt"
DEFAULT_REASON = "reconcile: an orphan stamp at Finkok is this invoice's document"
_OTHER = aliased(Invoice)


def plan_adoption(orphan: Orphan) -> Plan:
    """What adopting this orphan would do (or why not)."""
    return Plan(orphan.uuid, orphan.adoptable,
                f"{orphan.state} -> stamped with {orphan.uuid}, OK to SIF" if orphan.adoptable
                else f"refused: {orphan.note}",
                orphan.invoice_id, None, orphan.reference, orphan.state)


def adopt_stamp(session: Session, orphan: Orphan, *, actor: str, reason: str,
                now: datetime | None = None) -> ActionResult:
    """Adopt one orphan into its invoice (caller commits); see the module docstring."""
    now = now or utcnow()
    plan = plan_adoption(orphan)
    if not plan.will_change or orphan.invoice_id is None or orphan.xml is None:
        return ActionResult(plan, False, plan.note)
    invoice = session.get(Invoice, orphan.invoice_id, populate_existing=True)
    why = _recheck(invoice, orphan)
    if why or invoice is None:
        return ActionResult(plan, False, f"refused: {why}")
    tfd = find_tfd(parse(orphan.xml.encode("utf-8")))
    assert tfd is not None  # _recheck read it
    old = {"old_state": invoice.state, "old_errors": invoice.errors,
           "old_error_kind": invoice.error_kind, "must_check_stamped": invoice.must_check_stamped,
           "sat_uuid": orphan.uuid, "fecha_timbrado": tfd.get("FechaTimbrado")}
    elsewhere = exists().where(_OTHER.sat_uuid == orphan.uuid, _OTHER.id != invoice.id)
    moved = move(
        session, ADOPT, invoice.id, now=now, unless=elsewhere,
        sat_uuid=orphan.uuid, stamped_xml=orphan.xml.encode("utf-8"),
        fecha_timbrado=tfd.get("FechaTimbrado"), no_certificado_sat=tfd.get("NoCertificadoSAT"),
        stamped_at=now, sat_status=None, must_check_stamped=False, errors=None,
        error_kind=None, next_attempt_at=None, hold_key=None, updated_at=now,
    )
    if not moved:
        return ActionResult(plan, False, "refused: the invoice changed meanwhile; run again")
    notification_id = outbox(session, invoice.id, "OK", now=now)
    session.add(AuditLog(at=now, actor=actor, action=ADOPT_ACTION, invoice_id=invoice.id,
                         notification_id=notification_id, reason=reason or DEFAULT_REASON,
                         details=old))
    log.info("adopted %s into invoice %s (%s -> stamped)", orphan.uuid, invoice.id, old["old_state"],
             extra={"invoice_id": invoice.id, "sat_uuid": orphan.uuid})
    return ActionResult(replace(plan, notification_id=notification_id), True,
                        f"{old['old_state']} -> stamped with {orphan.uuid}")


def _recheck(invoice: Invoice | None, orphan: Orphan) -> str | None:
    if invoice is None:
        return "the invoice is gone"
    if not ADOPT.allows(invoice.state):
        return f"the invoice is {invoice.state} now; run again"
    if invoice.sat_uuid:
        return f"the invoice holds UUID {invoice.sat_uuid} now"
    try:
        xml = (orphan.xml or "").encode("utf-8")
        tfd = find_tfd(parse(xml))
        same = sealed_digest(xml) == sealed_digest(invoice.xml)
    except (NotACfdi, UnsafeXmlError) as exc:
        return f"the stamped XML cannot be read: {exc}"
    if tfd is None or (tfd.get("UUID") or "").upper() != orphan.uuid.upper():
        return "the stamped XML's TimbreFiscalDigital does not name this UUID"
    if not same:
        return "the stamped document is not the invoice's (its XML changed meanwhile?)"
    return None


def adopt_many(sessions: sessionmaker[Session], orphans: Iterable[Orphan], *, actor: str,
               reason: str, publish: Bell | None) -> list[ActionResult]:
    """One transaction per orphan; after each commit, the notify doorbell for its OK."""
    out = []
    for orphan in orphans:
        with sessions.begin() as session:
            result = adopt_stamp(session, orphan, actor=actor, reason=reason)
        nid = result.plan.notification_id
        if result.done and publish is not None and nid:
            published = publish(nid, reference=result.plan.reference)
            result = replace(result, published=published, message=result.message + (
                "" if published else "; the broker refused the message, the sweeper will ring it"))
        out.append(result)
    return out
