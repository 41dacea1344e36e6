"""`billing reprocess` through the real entry point: the pipeline against the Finkok and
SIF sandboxes, dry runs compared row by row, refusals, confirmation and the audit log."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from worker.cfdi.factory import build_invoice
from worker.cli import app
from worker.cli.context import current_actor
from worker.db.models import AuditLog, Invoice, Notification, utcnow
from worker.finkok.client import FinkokClient
from worker.invoices.intake import submit
from worker.invoices.notify import deliver
from worker.invoices.stamping import stamp_invoice
from worker.sandbox.finkok import FinkokSandbox
from worker.sandbox.sif import SifSandbox
from worker.settings import Settings
from worker.sif.client import SifClient

from .conftest import FOREIGN, Fleet, queued_messages, snapshot

STAMP = "billing.stamp_invoice"


def _stamp(sessions: sessionmaker[Session], settings: Settings, invoice_id: str) -> str:
    with FinkokClient.from_settings(settings) as client:
        return stamp_invoice(sessions, client, settings, invoice_id, owner="test",
                             sleep=lambda _s: None).state


def _deliver_all(sessions: sessionmaker[Session], settings: Settings, invoice_id: str) -> list[str]:
    with sessions() as s:
        ids = list(s.scalars(select(Notification.id).where(
            Notification.invoice_id == invoice_id, Notification.state == "queued")))
    with SifClient(settings) as client:
        return [deliver(sessions, nid, client=client, settings=settings, owner="test").result
                for nid in ids]


def _invoice(sessions: sessionmaker[Session], invoice_id: str) -> Invoice:
    with sessions() as s:
        row = s.get(Invoice, invoice_id)
        assert row is not None
        return row


def _audit(sessions: sessionmaker[Session]) -> list[AuditLog]:
    with sessions() as s:
        return list(s.scalars(select(AuditLog).order_by(AuditLog.id)))


def test_reprocess_failed_invoice_ends_stamped_and_reported(
    ops_env: Path, runner: CliRunner, sessions: sessionmaker[Session], finkok: FinkokSandbox,
    sif: SifSandbox, pipeline_settings: Settings,
) -> None:
    # SAT unreachable (708) and the attempts run out (stamp_max_attempts=1 here): failed, NOK
    finkok.configure(rules={"URE180429TM6": "reject:708"})
    xml = build_invoice(folio="e2e")
    invoice_id = submit(sessions, xml, empresa_ref_id="E1", reference="E2E-1").invoice_id
    assert _stamp(sessions, pipeline_settings, invoice_id) == "failed"
    assert _deliver_all(sessions, pipeline_settings, invoice_id) == ["delivered"]  # the NOK
    failed = _invoice(sessions, invoice_id)
    assert failed.errors and failed.errors[0]["code"] == "708"

    finkok.configure(rules={})  # SAT is back
    before = utcnow()
    res = runner.invoke(app, ["reprocess", invoice_id, "--reason", "SAT is back"])
    assert res.exit_code == 0, res.output
    assert f"✓ {invoice_id} E2E-1: failed -> received" in res.stdout

    row = _invoice(sessions, invoice_id)
    assert (row.state, row.attempts, row.errors, row.error_kind) == ("received", 0, None, None)
    assert row.next_attempt_at is not None and before <= row.next_attempt_at <= utcnow()
    assert row.must_check_stamped is False
    (audit,) = _audit(sessions)
    assert (audit.actor, audit.action, audit.invoice_id, audit.reason) == (
        current_actor(), "reprocess", invoice_id, "SAT is back")
    assert audit.details is not None
    assert audit.details["old_state"] == "failed" and audit.details["old_error_kind"] == "exhausted"
    assert audit.details["old_errors"][0]["code"] == "708"
    assert queued_messages(ops_env) == [(STAMP, [invoice_id])]  # the doorbell rang

    assert _stamp(sessions, pipeline_settings, invoice_id) == "stamped"
    assert _deliver_all(sessions, pipeline_settings, invoice_id) == ["delivered"]
    assert sif.statuses("E1", "E2E-1") == ["NOK", "OK"]
    assert (finkok.document_stats(xml) or {})["new_stamps"] == 1


def test_reprocess_after_an_unanswered_stamp_asks_stamped_and_never_stamps_twice(
    ops_env: Path, runner: CliRunner, sessions: sessionmaker[Session], finkok: FinkokSandbox,
    pipeline_settings: Settings,
) -> None:
    """Finkok stamps, the connection drops, attempts run out: failed with must_check_stamped.
    A corrected XML is refused (Finkok may hold a stamp); a reprocess keeps the flag, so the
    pipeline asks `stamped` first and takes the stamp Finkok already made."""
    finkok.configure(rules={"URE180429TM6": "drop_once"})
    xml = build_invoice(folio="drop")
    invoice_id = submit(sessions, xml, empresa_ref_id="E1", reference="DROP-1").invoice_id
    assert _stamp(sessions, pipeline_settings, invoice_id) == "failed"  # stamp_max_attempts=1
    row = _invoice(sessions, invoice_id)
    assert (row.error_kind, row.must_check_stamped) == ("unknown", True)

    fixed = ops_env / "fixed.xml"
    fixed.write_bytes(build_invoice(folio="drop-2"))
    res = runner.invoke(app, ["reprocess", invoice_id, "--replace-xml", str(fixed),
                              "--reason", "receptor corrected"])
    assert res.exit_code == 1
    assert "went unanswered, so Finkok may hold a stamp" in res.stderr + res.stdout
    assert _invoice(sessions, invoice_id).xml == xml

    res = runner.invoke(app, ["reprocess", "DROP-1", "--dry-run"])
    assert res.exit_code == 0 and "asks Finkok `stamped` first" in res.stdout
    res = runner.invoke(app, ["reprocess", "DROP-1", invoice_id,  # the same one, twice
                              "--reason", "Finkok answered again"])
    assert res.exit_code == 0, res.output
    assert "reprocess: 1 done, 0 refused" in res.stderr
    row = _invoice(sessions, invoice_id)
    assert (row.state, row.must_check_stamped) == ("received", True)

    assert _stamp(sessions, pipeline_settings, invoice_id) == "pending"  # recovered stamp
    row = _invoice(sessions, invoice_id)
    assert row.sat_uuid and row.stamped_xml
    assert (finkok.document_stats(xml) or {})["new_stamps"] == 1
    calls = finkok.stats()["calls"]
    assert calls["stamp.stamp"] == 1 and calls["stamp.stamped"] == 1


def test_reprocess_with_a_corrected_xml(
    ops_env: Path, runner: CliRunner, sessions: sessionmaker[Session], engine: Engine,
    finkok: FinkokSandbox, sif: SifSandbox, pipeline_settings: Settings,
) -> None:
    finkok.configure(rules={FOREIGN: "reject:CFDI40143"})
    wrong = build_invoice(folio="rx", receptor_rfc=FOREIGN)
    invoice_id = submit(sessions, wrong, empresa_ref_id="E1", reference="RX-1").invoice_id
    assert _stamp(sessions, pipeline_settings, invoice_id) == "rejected"
    assert _deliver_all(sessions, pipeline_settings, invoice_id) == ["delivered"]
    corrected = ops_env / "corrected.xml"
    corrected.write_bytes(build_invoice(folio="rx"))

    before = snapshot(engine)
    res = runner.invoke(app, ["reprocess", "RX-1", "--replace-xml", str(corrected), "--dry-run",
                              "--json"])
    assert res.exit_code == 0, res.output
    plan = json.loads(res.stdout)
    assert plan["will_change"] is True and plan["dry_run"] is True
    assert "with the new XML (version 2)" in plan["note"]
    assert snapshot(engine) == before and queued_messages(ops_env) == []

    same = ops_env / "same.xml"
    same.write_bytes(wrong)
    res = runner.invoke(app, ["reprocess", "RX-1", "--replace-xml", str(same), "--reason", "x"])
    assert res.exit_code == 1 and "already has" in res.stdout + res.stderr

    res = runner.invoke(app, ["reprocess", "RX-1", "--replace-xml", str(corrected),
                              "--reason", "receptor corrected by ERP"])
    assert res.exit_code == 0, res.output
    assert "XML replaced" in res.stdout
    row = _invoice(sessions, invoice_id)
    assert (row.state, row.xml_version, row.xml, row.receptor_rfc) == (
        "received", 2, corrected.read_bytes(), "URE180429TM6")
    (audit,) = _audit(sessions)
    assert (audit.action, audit.actor, audit.reason) == (
        "replace-xml", current_actor(), "receptor corrected by ERP")
    assert queued_messages(ops_env) == [(STAMP, [invoice_id])]

    assert _stamp(sessions, pipeline_settings, invoice_id) == "stamped"
    assert _deliver_all(sessions, pipeline_settings, invoice_id) == ["delivered"]
    assert sif.statuses("E1", "RX-1") == ["NOK", "OK"]


def test_reprocess_refuses_invoices_that_hold_a_stamp(
    ops_env: Path, runner: CliRunner, engine: Engine, fleet: Fleet,
) -> None:
    before = snapshot(engine)
    res = runner.invoke(app, ["reprocess", "R-stamped", fleet.ids["R-pending"], "R-retry", "nope",
                              "--reason", "look again"])
    assert res.exit_code == 1
    err = res.stderr
    assert (f"✗ R-stamped: refused: stamped (SAT UUID {fleet.uuids['R-stamped']}); "
            "a stamped invoice is never stamped again") in err
    assert f"refused: pending, Finkok holds its stamp (SAT UUID {fleet.uuids['R-pending']})" in err
    assert "✗ R-retry: refused: retry_wait, already in the pipeline" in err
    assert "✗ nope: refused: no invoice with id, SAT UUID or reference 'nope'" in err
    assert "reprocess: 0 done, 4 refused" in err
    assert snapshot(engine) == before and queued_messages(ops_env) == []

    # Asked for explicitly by filter, stamped ones are refused too.
    res = runner.invoke(app, ["reprocess", "--state", "stamped", "--yes", "--reason", "x"])
    assert res.exit_code == 1 and "reprocess: 0 done, 3 refused" in res.stderr
    assert snapshot(engine) == before


def test_bulk_dry_run_changes_nothing(ops_env: Path, runner: CliRunner, engine: Engine,
                                      fleet: Fleet) -> None:
    before = snapshot(engine)
    res = runner.invoke(app, ["reprocess", "--since", "30d", "--dry-run"])  # rejected + failed
    assert res.exit_code == 0, res.output
    assert "dry run: 2 would change, 1 refused" in res.stdout  # the rejection needs a new XML
    assert "dry run: nothing was changed" in res.stderr
    for ref in ("R-rejected", "R-failed", "R-unknown"):
        assert fleet.ids[ref] in res.stdout
    res = runner.invoke(app, ["reprocess", "--since", "30d", "--dry-run", "--same-xml"])
    assert "dry run: 3 would change, 0 refused" in res.stdout

    res = runner.invoke(app, ["reprocess", "--code", "708", "--dry-run", "--json"])
    plans = [json.loads(line) for line in res.stdout.splitlines()]
    assert [(p["invoice_id"], p["will_change"]) for p in plans] == [(fleet.ids["R-failed"], True)]
    res = runner.invoke(app, ["reprocess", "--state", "failed", "--state", "stamped",
                              "--dry-run", "--json"])
    plans = [json.loads(line) for line in res.stdout.splitlines()]
    assert sorted(p["will_change"] for p in plans) == [False, False, False, True, True]
    assert snapshot(engine) == before and queued_messages(ops_env) == []


def _more_failed(sessions: sessionmaker[Session], n: int) -> list[str]:
    now = utcnow()
    ids = []
    with sessions.begin() as s:
        for i in range(n):
            xml = f"<x n='{i}'/>".encode()
            row = Invoice(id=str(uuid.uuid4()), empresa_ref_id="E9", reference=f"F{i}",
                          xml=xml, xml_sha256=f"{i:064d}", emisor_rfc="AAA010101AAA",
                          receptor_rfc="URE180429TM6", total="1.00", state="failed",
                          state_changed_at=now - timedelta(minutes=i), attempts=3,
                          errors=[{"code": "708", "message": "x", "kind": "transient"}],
                          error_kind="exhausted", next_attempt_at=None)
            s.add(row)
            ids.append(row.id)
    return ids


def test_bulk_reprocess_asks_first_then_audits_each(
    ops_env: Path, runner: CliRunner, engine: Engine, sessions: sessionmaker[Session],
    fleet: Fleet,
) -> None:
    ids = _more_failed(sessions, 4) + [fleet.ids["R-failed"], fleet.ids["R-unknown"]]
    before = snapshot(engine)
    res = runner.invoke(app, ["reprocess", "--state", "failed", "--reason", "SAT outage over"],
                        input="n\n")
    assert res.exit_code == 1 and "reprocess 6 rows?" in res.stderr
    assert snapshot(engine) == before and queued_messages(ops_env) == []

    res = runner.invoke(app, ["reprocess", "--state", "failed", "--reason", "SAT outage over"],
                        input="y\n")
    assert res.exit_code == 0, res.output
    assert "reprocess: 6 done, 0 refused" in res.stderr
    with sessions() as s:
        states = {r.id: r.state for r in s.execute(
            select(Invoice.id, Invoice.state).where(Invoice.id.in_(ids)))}
    assert set(states.values()) == {"received"}
    audit = _audit(sessions)
    assert sorted(a.invoice_id for a in audit) == sorted(ids)
    assert {(a.action, a.reason, a.actor) for a in audit} == {
        ("reprocess", "SAT outage over", current_actor())}
    assert sorted(args[0] for _, args in queued_messages(ops_env)) == sorted(ids)
    # untouched: everything that was not failed
    with sessions() as s:
        assert s.get(Invoice, fleet.ids["R-rejected"]).state == "rejected"  # type: ignore[union-attr]


def test_reprocess_with_the_broker_down_leaves_it_to_the_sweeper(
    ops_env: Path, runner: CliRunner, sessions: sessionmaker[Session], fleet: Fleet,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BILLING_BROKER_URL", "redis://127.0.0.1:1/0")  # nothing listens on port 1
    res = runner.invoke(app, ["reprocess", "R-rejected", "--json", "--same-xml",
                              "--reason", "receptor fixed at SAT"])
    assert res.exit_code == 0, res.output
    (line,) = [json.loads(x) for x in res.stdout.splitlines()]
    assert (line["done"], line["published"]) == (True, False)
    assert "the sweeper will ring it" in line["message"]
    assert _invoice(sessions, fleet.ids["R-rejected"]).state == "received"


def test_reprocess_needs_a_target(ops_env: Path, runner: CliRunner) -> None:
    res = runner.invoke(app, ["reprocess"])
    assert res.exit_code == 2 and "name invoices, or select them with a filter" in res.stderr
    res = runner.invoke(app, ["reprocess", "X", "--state", "failed"])
    assert res.exit_code == 2 and "not both" in res.stderr


def test_reprocess_needs_a_reason(ops_env: Path, runner: CliRunner, engine: Engine,
                                  fleet: Fleet) -> None:
    before = snapshot(engine)
    for args in (["R-failed"], ["--state", "failed", "--yes"], ["R-failed", "--reason", "  "]):
        res = runner.invoke(app, ["reprocess", *args])
        assert res.exit_code == 2 and "a reprocess needs --reason" in res.stderr, res.output
    res = runner.invoke(app, ["reprocess", "R-failed", "--dry-run"])  # a dry run needs none
    assert res.exit_code == 0 and "1 would change" in res.stdout
    assert snapshot(engine) == before and queued_messages(ops_env) == []


def test_a_rejected_invoice_needs_a_new_document_or_same_xml(
    ops_env: Path, runner: CliRunner, engine: Engine, sessions: sessionmaker[Session],
    fleet: Fleet,
) -> None:
    """A fiscal-data rejection is refused with the reason and the flag to use; a failed
    invoice (nothing wrong in the document) moves with the same XML; --same-xml says the
    operator knows, and moves the rejection too."""
    before = snapshot(engine)
    res = runner.invoke(app, ["reprocess", "R-rejected", "--reason", "try again"])
    assert res.exit_code == 1
    assert ("✗ R-rejected: refused: rejected (fiscal_data: CFDI40143): the document must "
            "change; give a corrected, re-sealed XML with --replace-xml FILE, or --same-xml "
            "to send the same XML again") in res.stderr
    assert snapshot(engine) == before and queued_messages(ops_env) == []

    (ops_env / "x.xml").write_bytes(b"<x/>")
    res = runner.invoke(app, ["reprocess", "R-rejected", "--replace-xml", str(ops_env / "x.xml"),
                              "--same-xml", "--reason", "x"])
    assert res.exit_code == 2 and "exclude each other" in res.stderr

    # The negative control: a failed invoice moves without any flag.
    res = runner.invoke(app, ["reprocess", "R-failed", "--reason", "SAT outage over"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["reprocess", "R-rejected", "--same-xml",
                              "--reason", "receptor updated its data at SAT"])
    assert res.exit_code == 0, res.output
    assert _invoice(sessions, fleet.ids["R-rejected"]).state == "received"
    assert {(a.action, a.reason) for a in _audit(sessions)} == {
        ("reprocess", "SAT outage over"), ("reprocess", "receptor updated its data at SAT")}
