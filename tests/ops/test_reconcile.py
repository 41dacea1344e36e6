"""`billing reconcile` against the Finkok and SIF sandboxes over HTTP, on SQLite and
PostgreSQL: an orphan stamp (our document stamped at Finkok outside the pipeline, its answer
lost, while the invoice waits in `failed`) is found, matched, adopted with --yes (the
invoice ends stamped with that UUID, SIF gets one OK), a phantom is reported, a dry run
changes nothing, and the findings are stored for --last."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from worker.cfdi.factory import build_invoice
from worker.cli import app
from worker.db.models import AuditLog, Invoice, Notification, ReconcileRun, utcnow
from worker.finkok.client import FinkokClient
from worker.finkok.errors import FinkokAmbiguous
from worker.invoices.intake import submit
from worker.sandbox.finkok import FinkokSandbox
from worker.sandbox.sif import SifSandbox
from worker.settings import Settings

from .conftest import EMISOR, queued_messages, snapshot
from .test_reprocess_cli import _deliver_all, _invoice, _stamp

NOTIFY = "billing.notify_sif"


@pytest.fixture()
def cli_finkok(ops_env: Path, monkeypatch: pytest.MonkeyPatch, finkok: FinkokSandbox,
               sif: SifSandbox) -> Path:
    """The CLI pointed at the sandboxes."""
    monkeypatch.setenv("BILLING_FINKOK_ENVIRONMENT", finkok.url)
    monkeypatch.setenv("BILLING_SIF_BASE_URL", sif.url)
    return ops_env


def _orphan_of_a_failed_invoice(sessions: sessionmaker[Session], finkok: FinkokSandbox,
                                settings: Settings, reference: str) -> tuple[str, bytes, str]:
    """An invoice that failed (SAT unreachable, 708, until its attempts ran out; NOK
    delivered), whose very document another call then stamped at Finkok with the answer
    lost. Returns (invoice id, xml, UUID)."""
    finkok.configure(rules={"URE180429TM6": "reject:708"})
    xml = build_invoice(folio=reference)
    invoice_id = submit(sessions, xml, empresa_ref_id="E1", reference=reference).invoice_id
    assert _stamp(sessions, settings, invoice_id) == "failed"
    assert _deliver_all(sessions, settings, invoice_id) == ["delivered"]  # the NOK
    finkok.configure(rules={}, drop_rate=1.0)  # Finkok stamps, the answer never arrives
    with FinkokClient.from_settings(settings) as client, pytest.raises(FinkokAmbiguous):
        client.stamp(xml)
    finkok.configure(drop_rate=0.0)
    [sat_uuid] = (finkok.document_stats(xml) or {})["uuids"]
    return invoice_id, xml, sat_uuid


def _phantom(sessions: sessionmaker[Session]) -> tuple[str, str]:
    """A stamped invoice whose UUID Finkok never issued."""
    xml = build_invoice(folio="phantom")
    phantom_uuid = str(uuid.uuid4()).upper()
    with sessions.begin() as db:
        row = Invoice(empresa_ref_id="E1", reference="PHANTOM-1", xml=xml,
                      xml_sha256=hashlib.sha256(xml).hexdigest(), emisor_rfc=EMISOR,
                      receptor_rfc="URE180429TM6", total="116.00", state="stamped",
                      sat_uuid=phantom_uuid, stamped_at=utcnow(), next_attempt_at=None)
        db.add(row)
        db.flush()
        return row.id, phantom_uuid


def test_orphan_found_matched_adopted_and_reported_once(
    cli_finkok: Path, runner: CliRunner, sessions: sessionmaker[Session], engine: Engine,
    finkok: FinkokSandbox, sif: SifSandbox, pipeline_settings: Settings,
) -> None:
    invoice_id, xml, sat_uuid = _orphan_of_a_failed_invoice(
        sessions, finkok, pipeline_settings, "ORPH-1")
    phantom_id, phantom_uuid = _phantom(sessions)
    assert _invoice(sessions, invoice_id).state == "failed"

    before = snapshot(engine)
    dry = runner.invoke(app, ["reconcile", "--emisor", EMISOR, "--dry-run", "--json"])
    assert dry.exit_code == 1, dry.output
    [report] = [json.loads(line) for line in dry.stdout.splitlines()]
    assert (report["finkok_uuids"], report["credits_used"], report["our_stamps"]) == (1, 1, 1)
    [orphan] = report["orphans"]
    assert (orphan["uuid"], orphan["match"], orphan["invoice_id"], orphan["state"]) == (
        sat_uuid, "adoptable", invoice_id, "failed")
    [phantom] = report["phantoms"]
    assert (phantom["invoice_id"], phantom["sat_uuid"]) == (phantom_id, phantom_uuid)
    assert phantom["finkok_stamped"] == "603" and phantom["sat_estado"] == "No Encontrado"
    assert snapshot(engine) == before  # a dry run stores nothing, adopts nothing

    res = runner.invoke(app, ["reconcile", "--emisor", EMISOR, "--yes", "--reason", "lost answer"])
    assert res.exit_code == 1, res.output  # the phantom is still there
    assert f"orphan  {sat_uuid}" in res.stdout and "adoptable" in res.stdout
    assert f"phantom {phantom_uuid}" in res.stdout and "said 603" in res.stdout
    assert f"✓ adopt {invoice_id} ORPH-1: failed -> stamped with {sat_uuid}" in res.stdout

    row = _invoice(sessions, invoice_id)
    with FinkokClient.from_settings(pipeline_settings) as client:
        finkok_xml = client.get_xml(sat_uuid, EMISOR).xml
    assert (row.state, row.sat_uuid, row.errors, row.must_check_stamped) == (
        "stamped", sat_uuid, None, False)
    assert row.stamped_xml == (finkok_xml or "").encode() and row.fecha_timbrado
    with sessions() as db:
        [audit] = db.scalars(select(AuditLog).where(AuditLog.action == "adopt")).all()
        [ok] = db.scalars(select(Notification).where(Notification.invoice_id == invoice_id,
                                                     Notification.status == "OK")).all()
    assert (audit.invoice_id, audit.reason, audit.notification_id) == (invoice_id, "lost answer", ok.id)
    assert audit.details and audit.details["old_state"] == "failed"
    assert queued_messages(cli_finkok) == [(NOTIFY, [ok.id])]  # the doorbell rang

    assert _deliver_all(sessions, pipeline_settings, invoice_id) == ["delivered"]
    assert sif.statuses("E1", "ORPH-1") == ["NOK", "OK"]
    [put] = [r for r in sif.received("E1", "ORPH-1") if sat_uuid in json.dumps(r)]
    assert (finkok.document_stats(xml) or {})["new_stamps"] == 1  # never stamped twice

    last = runner.invoke(app, ["reconcile", "--last", "--json"])
    [stored] = [json.loads(line) for line in last.stdout.splitlines()]
    assert (stored["emisor_rfc"], stored["orphans"], stored["matched"], stored["adopted"],
            stored["phantoms"], stored["trigger"]) == (EMISOR, 1, 1, 1, 1, "cli")
    assert stored["details"]["orphans"][0]["adopted"] is True

    again = runner.invoke(app, ["reconcile", "--emisor", EMISOR, "--json"])
    [report] = [json.loads(line) for line in again.stdout.splitlines()]
    assert report["orphans"] == [] and len(report["phantoms"]) == 1  # the orphan is resolved
    with sessions() as db:
        assert len(db.scalars(select(ReconcileRun)).all()) == 2


def test_orphans_that_are_not_adopted(
    cli_finkok: Path, runner: CliRunner, sessions: sessionmaker[Session],
    finkok: FinkokSandbox, pipeline_settings: Settings,
) -> None:
    """A stamp of a document that is not ours is reported unmatched; an orphan whose invoice
    is being stamped by a worker is not adopted; without --yes nothing is adopted."""
    with FinkokClient.from_settings(pipeline_settings) as client:
        foreign = client.stamp(build_invoice(folio="someone-else")).uuid
    invoice_id, _xml, sat_uuid = _orphan_of_a_failed_invoice(
        sessions, finkok, pipeline_settings, "ORPH-2")
    with sessions.begin() as db:
        db.get(Invoice, invoice_id).state = "stamping"  # type: ignore[union-attr]
    res = runner.invoke(app, ["reconcile", "--emisor", EMISOR, "--json", "--yes"])
    assert res.exit_code == 1
    [report] = [json.loads(line) for line in res.stdout.splitlines()]
    matches = {o["uuid"]: o["match"] for o in report["orphans"]}
    assert matches == {foreign: "unmatched", sat_uuid: "not_adoptable"}
    assert report["adoptions"] == []

    with sessions.begin() as db:
        db.get(Invoice, invoice_id).state = "failed"  # type: ignore[union-attr]
    res = runner.invoke(app, ["reconcile", "--emisor", EMISOR], input="n\n")
    assert res.exit_code != 0 and "adopt 1 orphan stamp(s)" in res.stderr
    assert _invoice(sessions, invoice_id).state == "failed"


def test_finkok_unreachable_is_one_line_and_stored(
    ops_env: Path, runner: CliRunner, sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.cli.process import dead_port

    monkeypatch.setenv("BILLING_FINKOK_ENVIRONMENT", f"http://127.0.0.1:{dead_port()}")
    monkeypatch.setenv("BILLING_FINKOK_CONNECT_TIMEOUT_S", "0.5")
    res = runner.invoke(app, ["reconcile", "--emisor", EMISOR])
    assert res.exit_code == 1
    assert "report_uuid: FinkokNotSent" in res.stderr
    with sessions() as db:
        [row] = db.scalars(select(ReconcileRun)).all()
    assert row.error and "FinkokNotSent" in row.error and "sandbox" not in row.error
