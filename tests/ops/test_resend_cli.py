"""`billing resend` through the real entry point: re-queue, audit, ring, deliver to SIF."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from worker.cli import app
from worker.cli.context import current_actor
from worker.db.models import AuditLog, Notification
from worker.invoices.notify import deliver
from worker.sandbox.sif import SifSandbox
from worker.settings import Settings
from worker.sif.client import SifClient

from .conftest import Fleet, queued_messages, snapshot

NOTIFY = "billing.notify_sif"


def _note(sessions: sessionmaker[Session], notification_id: str) -> Notification:
    with sessions() as s:
        row = s.get(Notification, notification_id)
        assert row is not None
        return row


def test_resend_by_result_requeues_audits_rings_and_delivers(
    ops_env: Path, runner: CliRunner, sessions: sessionmaker[Session], fleet: Fleet,
    sif: SifSandbox, pipeline_settings: Settings,
) -> None:
    nid = fleet.notes["unauthorized"]
    res = runner.invoke(app, ["resend", "--result", "unauthorized", "--reason", "SIF secret rotated"])
    assert res.exit_code == 0, res.output
    assert f"✓ {fleet.ids['R-stamped2']} R-stamped2 {nid}: failed -> queued" in res.stdout
    row = _note(sessions, nid)
    assert (row.state, row.result) == ("queued", None)
    with sessions() as s:
        (audit,) = s.scalars(select(AuditLog))
    assert (audit.action, audit.actor, audit.reason, audit.notification_id, audit.invoice_id) == (
        "resend", current_actor(), "SIF secret rotated", nid, fleet.ids["R-stamped2"])
    assert audit.details == {"from_state": "failed", "previous_result": "unauthorized"}
    assert queued_messages(ops_env) == [(NOTIFY, [nid])]

    with SifClient(pipeline_settings) as client:  # what the worker does with the message
        outcome = deliver(sessions, nid, client=client, settings=pipeline_settings, owner="test")
    assert outcome.result == "delivered"
    assert sif.statuses("E2", "R-stamped2") == ["OK"]


def test_resend_by_invoice_and_its_refusals(
    ops_env: Path, runner: CliRunner, sessions: sessionmaker[Session], engine: Engine,
    fleet: Fleet,
) -> None:
    before = snapshot(engine)
    res = runner.invoke(app, ["resend", fleet.notes["queued"], fleet.notes["old-nok"],
                              "R-received", "--reason", "x"])
    assert res.exit_code == 1
    err = res.stderr
    assert f"✗ {fleet.notes['queued']}: refused: OK notification is queued" in err
    assert (f"✗ {fleet.notes['old-nok']}: refused: superseded by OK notification "
            f"{fleet.notes['ok']}") in err
    assert "✗ R-received: refused: invoice " in err and "has no SIF notification yet" in err
    assert snapshot(engine) == before and queued_messages(ops_env) == []

    res = runner.invoke(app, ["resend", "R-failed", "--reason", "SIF was down two days"])
    assert res.exit_code == 0, res.output
    assert _note(sessions, fleet.notes["nok-failed"]).state == "queued"  # its latest: the NOK
    assert queued_messages(ops_env) == [(NOTIFY, [fleet.notes["nok-failed"]])]


def test_resend_refuses_a_nok_once_the_invoice_moved_on(
    ops_env: Path, runner: CliRunner, sessions: sessionmaker[Session], fleet: Fleet,
) -> None:
    res = runner.invoke(app, ["reprocess", "R-rejected", "--same-xml", "--reason", "fixed"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["resend", fleet.notes["nok-rejected"], "--reason", "x"])
    assert res.exit_code == 1
    assert "refused: the invoice is now received; this NOK no longer says its outcome" in res.stderr
    assert _note(sessions, fleet.notes["nok-rejected"]).state == "delivered"


def test_resend_dry_run_and_required_reason(
    ops_env: Path, runner: CliRunner, engine: Engine, fleet: Fleet,
) -> None:
    before = snapshot(engine)
    res = runner.invoke(app, ["resend", "--since", "7d", "--dry-run", "--json"])  # failed ones
    assert res.exit_code == 0, res.output
    plans = {p["notification_id"]: p for p in map(json.loads, res.stdout.splitlines())}
    assert set(plans) == {fleet.notes["unauthorized"], fleet.notes["nok-failed"]}
    assert all(p["will_change"] and p["dry_run"] for p in plans.values())
    res = runner.invoke(app, ["resend", "--state", "delivered", "--status", "OK", "--dry-run"])
    assert res.exit_code == 0 and "dry run: 1 would change, 0 refused" in res.stdout
    assert snapshot(engine) == before and queued_messages(ops_env) == []

    res = runner.invoke(app, ["resend", "--result", "unauthorized"])
    assert res.exit_code == 2 and "a resend needs --reason" in res.stderr
    res = runner.invoke(app, ["resend", "--state", "lost", "--reason", "x"])
    assert res.exit_code == 2 and "unknown state 'lost'" in res.stderr
    assert snapshot(engine) == before
