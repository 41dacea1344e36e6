"""`billing cancel` and `billing invoices show --acuse` against the test database and the
local Finkok: planned, confirmed, audited, rung; the acuse written byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from worker.cancellations.polling import poll_one
from worker.cancellations.sending import send_cancellation
from worker.cfdi.factory import build_invoice
from worker.cli import app
from worker.cli.context import current_actor
from worker.db.models import AuditLog, Cancellation, utcnow
from worker.finkok.client import FinkokClient
from worker.invoices.intake import submit
from worker.invoices.stamping import stamp_invoice
from worker.sandbox.finkok import FinkokSandbox
from worker.settings import Settings

from .conftest import queued_messages, snapshot


def test_cancel_plans_confirms_audits_and_show_writes_the_acuse(
    ops_env: Path, runner: CliRunner, engine: Engine, sessions: sessionmaker[Session],
    finkok: FinkokSandbox, pipeline_settings: Settings,
) -> None:
    invoice_id = submit(sessions, build_invoice(folio="CLI1"), empresa_ref_id="E1",
                        reference="CLI-1").invoice_id
    with FinkokClient.from_settings(pipeline_settings) as client:
        uuid = str(stamp_invoice(sessions, client, pipeline_settings, invoice_id, owner="t",
                                 sleep=lambda _s: None).detail)
    before = snapshot(engine)
    res = runner.invoke(app, ["cancel", "CLI-1", "--motivo", "02", "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "would_create" in res.stdout and snapshot(engine) == before
    res = runner.invoke(app, ["cancel", "CLI-1", "--motivo", "01", "--reason", "r", "--yes"])
    assert res.exit_code == 1 and "refused (motivo)" in res.output
    res = runner.invoke(app, ["cancel", uuid, "--motivo", "02", "--reason", "wrong customer",
                              "--yes"])
    assert res.exit_code == 0, res.output
    with sessions() as s:
        row = s.scalars(select(Cancellation)).one()
        audit = s.scalars(select(AuditLog).where(AuditLog.action == "cancel")).one()
    assert (audit.actor, audit.reason, audit.invoice_id) == (current_actor(), "wrong customer",
                                                             invoice_id)
    assert queued_messages(ops_env) == [("billing.send_cancellation", [row.id])]
    again = runner.invoke(app, ["cancel", invoice_id, "--motivo", "02", "--reason", "x", "--yes"])
    assert again.exit_code == 0 and "existing" in again.stdout
    with FinkokClient.from_settings(pipeline_settings) as client:
        assert send_cancellation(sessions, client, pipeline_settings, row.id, owner="t").state == "in_process"
        with sessions.begin() as s:
            s.get(Cancellation, row.id).next_attempt_at = utcnow()  # type: ignore[union-attr]
        assert poll_one(sessions, client, pipeline_settings, row.id, worker="t") == "cancelled"
    out = ops_env / "acuse.xml"
    res = runner.invoke(app, ["invoices", "show", invoice_id, "--acuse", str(out)])
    assert res.exit_code == 0, res.output
    assert "cancellation: cancelled motivo 02" in res.stdout
    rec = finkok.simulator.ledger.find_uuid(uuid)
    assert rec is not None and out.read_bytes() == rec.cancel_acuse.encode("utf-8")
    # `invoices list --cancel-state` finds it by its cancellation's state, and only then.
    listed = runner.invoke(app, ["invoices", "list", "--cancel-state", "cancelled", "--json"])
    assert listed.exit_code == 0, listed.output
    assert [r["id"] for r in json.loads(listed.stdout)["invoices"]] == [invoice_id]
    none = runner.invoke(app, ["invoices", "list", "--cancel-state", "in_process", "--json"])
    assert json.loads(none.stdout)["invoices"] == []
    bad = runner.invoke(app, ["invoices", "list", "--cancel-state", "gone"])
    assert bad.exit_code == 2 and "unknown state 'gone'" in bad.output
