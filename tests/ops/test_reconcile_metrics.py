"""The reconciliation gauges from stored runs (SQLite and PostgreSQL): the latest run of
each RFC; adopted orphans are not counted; a failed run sets `failed` and keeps the
previous run's findings."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from tests.ops.conftest import EMISOR, OTHER_EMISOR
from worker.db.models import utcnow
from worker.ops.metrics import create_registry
from worker.ops.reconcile import Orphan, Phantom, RfcReport, Window, save


def _save(sessions: sessionmaker[Session], report: RfcReport, run: str) -> None:
    with sessions.begin() as db:
        save(db, report, run_id=run, trigger="beat", started_at=utcnow())


def test_gauges_follow_the_latest_run(engine: Engine, sessions: sessionmaker[Session]) -> None:
    now = utcnow()
    window = Window(now - timedelta(days=2), now)
    orphan = Orphan("U-1", None, "adoptable", "x", invoice_id="i1")
    other = Orphan("U-2", None, "unmatched", "y")
    phantom = Phantom("i9", "R9", "U-9", "stamped", "603", "No Encontrado")
    _save(sessions, RfcReport(EMISOR, window, 5, 5, 4, (orphan,)), "run-1")
    _save(sessions, RfcReport(EMISOR, window, 5, 5, 4, (orphan, other), (phantom,),
                              adopted=("U-1",)), "run-2")
    _save(sessions, RfcReport(OTHER_EMISOR, window, 2, 2, 2), "run-2")
    value = create_registry(engine).get_sample_value
    assert value("billing_reconcile_orphans", {"taxpayer_id": EMISOR}) == 1  # U-1 adopted
    assert value("billing_reconcile_phantoms", {"taxpayer_id": EMISOR}) == 1
    assert value("billing_reconcile_orphans", {"taxpayer_id": OTHER_EMISOR}) == 0
    assert value("billing_reconcile_failed", {"taxpayer_id": EMISOR}) == 0
    stamp = value("billing_reconcile_last_run_timestamp_seconds", {"taxpayer_id": EMISOR})
    assert stamp is not None and abs(stamp - utcnow().timestamp()) < 60

    _save(sessions, RfcReport(EMISOR, window, error="report_uuid: FinkokNotSent: refused"), "run-3")
    value = create_registry(engine).get_sample_value
    assert value("billing_reconcile_failed", {"taxpayer_id": EMISOR}) == 1
    assert value("billing_reconcile_orphans", {"taxpayer_id": EMISOR}) == 1  # still there


def test_the_adopt_edge() -> None:
    """Unfenced, to stamped, only from states no worker holds a lease on and that hold no
    stamp (worker.ops.adopt says why each is safe)."""
    from worker.db.states import INVOICE_EDGES

    edge = INVOICE_EDGES["adopt"]
    assert (edge.target, edge.fenced, edge.due) == ("stamped", False, None)
    assert edge.sources == {"failed", "rejected", "retry_wait", "received", "held"}
