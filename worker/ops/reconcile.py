"""Reconciliation: prove nothing was lost, against Finkok's own ledger.

For one emisor RFC and one window of time, :func:`reconcile_rfc` compares what Finkok says
it stamped (``report_uuid``) with what the database holds, and reads only:

* an **orphan** is a UUID Finkok lists that no invoice holds. Its stamped XML is fetched
  (``get_xml``) and matched to an invoice by the sealed document inside it
  (:func:`worker.cfdi.sealed.sealed_digest` of the stamped XML, TFD removed, against the
  invoice's stored XML; candidates are narrowed by emisor, receptor and total first).
  A match in a state the ``adopt`` edge leaves is **adoptable** (``worker.ops.adopt``
  takes it as the invoice's stamp). A match that already holds another UUID is a
  **double stamp** (Finkok stamped the same document twice): reported, never adopted. No
  match: a stamp of that RFC for a document that is not ours (another system billing for
  the same RFC, or a document whose XML was replaced since).
* a **phantom** is a stamped (or pending) invoice of ours, stamped in the window, whose
  UUID Finkok does not list. Finkok is asked ``stamped`` with the invoice's XML: if it
  returns that very UUID the stamp exists (listed at another date, or the report lags) and
  it is not a phantom; otherwise it is, with what ``stamped`` and SAT (``get_sat_status``)
  said beside it.

Beside the counts: the credits Finkok charged in the window (``report_total``) and the
number of our stamps in it. Windows are UTC instants; Finkok's reports take Mexico City
wall time (``YYYY-MM-DDTHH:MM:SS``), converted here. The beat runs
:func:`run_reconcile` every ``reconcile_interval_s`` over the last ``reconcile_window_s``
(longer than the interval, so consecutive windows overlap); each RFC's findings are one
``reconcile_runs`` row (metrics and ``billing reconcile --last`` read them). Finkok calls
happen with no transaction open. A failed Finkok call makes that RFC's row an ``error``;
the other RFCs go on.
"""

from __future__ import annotations

import logging
import uuid as uuid_mod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session, defer, sessionmaker

from worker.cfdi.sealed import NotACfdi, sealed_digest
from worker.cfdi.xml import CFDI_NS, UnsafeXmlError, parse
from worker.db.models import Invoice, ReconcileRun, utcnow
from worker.db.states import INVOICE_EDGES, InvoiceState
from worker.finkok import results
from worker.finkok.errors import FinkokError
from worker.settings import Settings

log = logging.getLogger(__name__)

MEXICO_CITY = ZoneInfo("America/Mexico_City")
FINKOK_DATE = "%Y-%m-%dT%H:%M:%S"
RECENT_DAYS = 90  # get_xml reaches three months back
MAX_RFCS = 100
CHUNK = 500  # UUIDs per IN (...) query
HOLDS_A_STAMP = (InvoiceState.STAMPED, InvoiceState.PENDING)
ADOPT = INVOICE_EDGES["adopt"]
RECONCILE = "reconcile"  # the heartbeat's name

Match = Literal["adoptable", "not_adoptable", "double_stamp", "unmatched", "no_xml"]


class ReconcileClient(Protocol):
    def report_uuid(self, taxpayer_id: str, date_from: str, date_to: str,
                    invoice_type: str = "I") -> results.ReportUuidResult: ...
    def report_total(self, taxpayer_id: str, date_from: str, date_to: str,
                     invoice_type: str = "I") -> results.ReportTotalResult: ...
    def get_xml(self, uuid: str, taxpayer_id: str,
                invoice_type: str = "I") -> results.XmlResult: ...
    def stamped(self, xml: bytes) -> results.StampResult: ...
    def get_sat_status(self, taxpayer_id: str, rtaxpayer_id: str, uuid: str,
                       total: str) -> results.SatStatusResult: ...


@dataclass(frozen=True)
class Window:
    """[start, end] as UTC instants."""

    start: datetime
    end: datetime

    def finkok(self) -> tuple[str, str]:
        """The window in Finkok's report format (Mexico City wall time)."""
        return (self.start.astimezone(MEXICO_CITY).strftime(FINKOK_DATE),
                self.end.astimezone(MEXICO_CITY).strftime(FINKOK_DATE))


def default_window(settings: Settings, now: datetime | None = None) -> Window:
    """The last ``reconcile_window_s`` up to now: what each scheduled run looks at."""
    now = now or utcnow()
    return Window(now - timedelta(seconds=settings.reconcile_window_s), now)


@dataclass(frozen=True)
class Orphan:
    """A UUID Finkok lists that no invoice of ours holds, and what it matched."""

    uuid: str
    fecha: str | None
    match: Match
    note: str
    invoice_id: str | None = None
    reference: str | None = None
    state: str | None = None
    xml: str | None = field(default=None, repr=False)  # Finkok's stamped XML (never stored)

    @property
    def adoptable(self) -> bool:
        return self.match == "adoptable"

    def as_dict(self) -> dict[str, Any]:
        return {"uuid": self.uuid, "fecha": self.fecha, "match": self.match, "note": self.note,
                "invoice_id": self.invoice_id, "reference": self.reference, "state": self.state}


@dataclass(frozen=True)
class Phantom:
    """A stamp of ours that Finkok neither lists nor returns for the invoice's XML."""

    invoice_id: str
    reference: str
    sat_uuid: str
    state: str
    finkok_stamped: str  # what `stamped` answered: 603, another UUID, an error
    sat_estado: str | None  # SAT's Estado via get_sat_status (Vigente, No Encontrado...)

    def as_dict(self) -> dict[str, Any]:
        return {"invoice_id": self.invoice_id, "reference": self.reference,
                "sat_uuid": self.sat_uuid, "state": self.state,
                "finkok_stamped": self.finkok_stamped, "sat_estado": self.sat_estado}


@dataclass(frozen=True)
class RfcReport:
    """The findings for one emisor RFC in one window."""

    emisor_rfc: str
    window: Window
    finkok_uuids: int = 0
    credits_used: int | None = None
    our_stamps: int = 0
    orphans: tuple[Orphan, ...] = ()
    phantoms: tuple[Phantom, ...] = ()
    listed_elsewhere: tuple[str, ...] = ()  # our UUIDs not in the report that `stamped` confirms
    error: str | None = None
    adopted: tuple[str, ...] = ()  # UUIDs adopted in this run

    @property
    def unresolved_orphans(self) -> int:
        return sum(1 for o in self.orphans if o.uuid not in self.adopted)

    @property
    def clean(self) -> bool:
        return self.error is None and not self.unresolved_orphans and not self.phantoms

    def as_dict(self) -> dict[str, Any]:
        return {
            "emisor_rfc": self.emisor_rfc, "window_from": self.window.start,
            "window_to": self.window.end, "finkok_uuids": self.finkok_uuids,
            "credits_used": self.credits_used, "our_stamps": self.our_stamps,
            "orphans": [o.as_dict() | {"adopted": o.uuid in self.adopted} for o in self.orphans],
            "phantoms": [p.as_dict() for p in self.phantoms],
            "listed_elsewhere": list(self.listed_elsewhere), "error": self.error,
        }


# --- which RFCs ------------------------------------------------------------------------------


def rfcs_to_reconcile(session: Session, settings: Settings, now: datetime | None = None) -> list[str]:
    """``BILLING_RECONCILE_RFCS``, else the emisor RFCs of the invoices of the last 90 days."""
    configured = [r.strip().upper() for r in settings.reconcile_rfcs.split(",") if r.strip()]
    if configured:
        return list(dict.fromkeys(configured))
    since = (now or utcnow()) - timedelta(days=RECENT_DAYS)
    rows = session.scalars(
        select(Invoice.emisor_rfc).where(Invoice.created_at >= since)
        .group_by(Invoice.emisor_rfc).order_by(Invoice.emisor_rfc).limit(MAX_RFCS))
    return list(dict.fromkeys(str(r).upper() for r in rows))


# --- one RFC ---------------------------------------------------------------------------------


def reconcile_rfc(sessions: sessionmaker[Session], client: ReconcileClient, emisor_rfc: str,
                  window: Window) -> RfcReport:
    """Compare Finkok's report for ``emisor_rfc`` in ``window`` with the database (reads only)."""
    rfc = emisor_rfc.strip().upper()
    report = RfcReport(rfc, window)
    date_from, date_to = window.finkok()
    try:
        listed = client.report_uuid(rfc, date_from, date_to)
    except FinkokError as exc:
        return replace(report, error=f"report_uuid: {type(exc).__name__}: {exc}")
    if listed.error:
        return replace(report, error=f"report_uuid: Finkok answered {listed.error!r}")
    fechas = {(e.uuid or "").strip().upper(): e.date for e in listed.invoices if e.uuid}
    report = replace(report, finkok_uuids=len(fechas), credits_used=_credits_used(
        client, rfc, date_from, date_to))

    with sessions() as session:
        held = _held(session, fechas)
        ours = _our_stamps(session, rfc, window)
    orphans = tuple(_orphan(sessions, client, rfc, uid, fechas[uid])
                    for uid in sorted(set(fechas) - held))
    phantoms, elsewhere = [], []
    for inv in ours:
        if (inv["sat_uuid"] or "").upper() in fechas:
            continue
        phantom = _phantom(sessions, client, rfc, inv)
        if phantom is None:
            elsewhere.append(str(inv["sat_uuid"]))
        else:
            phantoms.append(phantom)
    return replace(report, our_stamps=len(ours), orphans=orphans, phantoms=tuple(phantoms),
                   listed_elsewhere=tuple(elsewhere))


def _credits_used(client: ReconcileClient, rfc: str, date_from: str, date_to: str) -> int | None:
    try:
        total = client.report_total(rfc, date_from, date_to)
    except FinkokError as exc:
        log.warning("report_total for %s failed: %s", rfc, type(exc).__name__)
        return None
    if total.error:
        return None
    return sum(e.total or 0 for e in total.entries)


def _held(session: Session, uuids: Iterable[str]) -> set[str]:
    """The UUIDs (upper case) some invoice holds."""
    wanted, found = sorted(uuids), set()
    for i in range(0, len(wanted), CHUNK):
        chunk = wanted[i:i + CHUNK]
        found |= {str(u).upper() for u in session.scalars(
            select(Invoice.sat_uuid).where(func.upper(Invoice.sat_uuid).in_(chunk)))}
    return found


def _our_stamps(session: Session, rfc: str, window: Window) -> list[dict[str, Any]]:
    """Invoices of ``rfc`` holding a stamp we took in the window."""
    rows = session.execute(
        select(Invoice.id, Invoice.reference, Invoice.sat_uuid, Invoice.state,
               Invoice.receptor_rfc, Invoice.total)
        .where(func.upper(Invoice.emisor_rfc) == rfc, Invoice.state.in_(HOLDS_A_STAMP),
               Invoice.sat_uuid.is_not(None), Invoice.stamped_at >= window.start,
               Invoice.stamped_at <= window.end)
        .order_by(Invoice.stamped_at))
    return [dict(r._mapping) for r in rows]


def _orphan(sessions: sessionmaker[Session], client: ReconcileClient, rfc: str, uid: str,
            fecha: str | None) -> Orphan:
    base = Orphan(uid, fecha, "no_xml", "")
    try:
        got = client.get_xml(uid, rfc)
    except FinkokError as exc:
        return replace(base, note=f"get_xml failed: {type(exc).__name__}: {exc}")
    if got.error or not got.xml or not got.xml.lstrip().startswith("<"):
        return replace(base, note=f"get_xml gave no XML ({got.error or 'empty'}); run again later")
    xml = got.xml.encode("utf-8")
    try:
        digest = sealed_digest(xml)
        root = parse(xml)
    except (NotACfdi, UnsafeXmlError) as exc:
        return replace(base, note=f"get_xml's XML is not a CFDI we can read: {exc}")
    receptor = root.find(f"{{{CFDI_NS}}}Receptor")
    receptor_rfc = (receptor.get("Rfc") if receptor is not None else "") or ""
    with sessions() as session:
        candidates = session.scalars(
            select(Invoice).options(defer(Invoice.stamped_xml))
            .where(func.upper(Invoice.emisor_rfc) == rfc,
                   func.upper(Invoice.receptor_rfc) == receptor_rfc.upper(),
                   Invoice.total == (root.get("Total") or ""))
            .order_by(Invoice.created_at))
        for inv in candidates:
            if sealed_digest(inv.xml) == digest:
                return _matched(replace(base, xml=got.xml), inv)
    return replace(base, match="unmatched", xml=got.xml, note=(
        "no invoice of ours holds this document (stamped by another system for this RFC, "
        "or the invoice's XML was replaced since)"))


def _matched(orphan: Orphan, inv: Invoice) -> Orphan:
    found = replace(orphan, invoice_id=inv.id, reference=inv.reference, state=inv.state)
    if inv.sat_uuid:
        return replace(found, match="double_stamp", note=(
            f"double stamp: the invoice already holds UUID {inv.sat_uuid}; Finkok stamped the "
            "same document twice (cancel one at SAT)"))
    if ADOPT.allows(inv.state):
        return replace(found, match="adoptable",
                       note=f"the stamp of this invoice's document: {inv.state} -> stamped, OK to SIF")
    return replace(found, match="not_adoptable", note=(
        f"the invoice is {inv.state}: a worker holds it now; run again once it settled"))


def _phantom(sessions: sessionmaker[Session], client: ReconcileClient, rfc: str,
             inv: dict[str, Any]) -> Phantom | None:
    """None when Finkok's ``stamped`` returns the invoice's UUID (the stamp exists)."""
    with sessions() as session:
        xml = session.scalar(select(Invoice.xml).where(Invoice.id == inv["id"])) or b""
    uid = str(inv["sat_uuid"])
    try:
        res = client.stamped(xml)
        if (res.uuid or "").upper() == uid.upper():
            return None
        said = (f"another UUID {res.uuid}" if res.uuid
                else ", ".join(res.codes) or res.cod_estatus or "no stamp")
    except FinkokError as exc:
        said = f"{type(exc).__name__}: {exc}"
    estado = None
    try:
        status = client.get_sat_status(rfc, str(inv["receptor_rfc"]), uid, str(inv["total"]))
        estado = status.estado or status.error
    except FinkokError as exc:
        estado = f"{type(exc).__name__}"
    return Phantom(str(inv["id"]), str(inv["reference"]), uid, str(inv["state"]), said, estado)


# --- runs: several RFCs, stored ----------------------------------------------------------------


def run_reconcile(
    sessions: sessionmaker[Session], client: ReconcileClient, settings: Settings, *,
    rfcs: Sequence[str] | None = None, window: Window | None = None, trigger: str = "beat",
    store: bool = True,
) -> tuple[str, list[RfcReport]]:
    """Reconcile each RFC (default: :func:`rfcs_to_reconcile`) over ``window`` (default: the
    last ``reconcile_window_s``); with ``store``, one ``reconcile_runs`` row per RFC.
    Returns the run id and the reports."""
    window = window or default_window(settings)
    if rfcs is None:
        with sessions() as session:
            rfcs = rfcs_to_reconcile(session, settings)
    run_id = str(uuid_mod.uuid4())
    reports = []
    for rfc in rfcs:
        started = utcnow()
        report = reconcile_rfc(sessions, client, rfc, window)
        reports.append(report)
        if store:
            with sessions.begin() as session:
                save(session, report, run_id=run_id, trigger=trigger, started_at=started)
        if not report.clean:
            log.warning("reconcile %s: %d orphan(s), %d phantom(s)%s", report.emisor_rfc,
                        len(report.orphans), len(report.phantoms),
                        f", error: {report.error}" if report.error else "")
    return run_id, reports


def save(session: Session, report: RfcReport, *, run_id: str, trigger: str,
         started_at: datetime, dry_run: bool = False) -> None:
    """Store (or, for the same run and RFC, update) the report's row."""
    row = session.scalar(select(ReconcileRun).where(ReconcileRun.run_id == run_id,
                                                    ReconcileRun.emisor_rfc == report.emisor_rfc))
    if row is None:
        row = ReconcileRun(run_id=run_id, trigger=trigger, dry_run=dry_run,
                           emisor_rfc=report.emisor_rfc, started_at=started_at)
        session.add(row)
    row.window_from, row.window_to = report.window.start, report.window.end
    row.finished_at = utcnow()
    row.finkok_uuids, row.credits_used = report.finkok_uuids, report.credits_used
    row.our_stamps, row.orphans = report.our_stamps, len(report.orphans)
    row.matched = sum(1 for o in report.orphans if o.invoice_id)
    row.adopted, row.phantoms = len(report.adopted), len(report.phantoms)
    row.error = report.error
    details = report.as_dict()
    row.details = {k: details[k] for k in ("orphans", "phantoms", "listed_elsewhere")}


def last_runs(session: Session) -> list[ReconcileRun]:
    """The latest stored row of each RFC, by RFC."""
    latest = (select(ReconcileRun.emisor_rfc, func.max(ReconcileRun.id).label("id"))
              .group_by(ReconcileRun.emisor_rfc).subquery())
    return list(session.scalars(
        select(ReconcileRun).join(latest, ReconcileRun.id == latest.c.id)
        .order_by(ReconcileRun.emisor_rfc)))
