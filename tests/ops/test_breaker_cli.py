"""`billing breaker list|reset` and what `invoices show` / `stats` say about a held invoice."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from worker.cfdi.factory import build_invoice
from worker.cli import app
from worker.db import breakers
from worker.db.models import AuditLog, Breaker, Invoice
from worker.invoices.intake import submit


def _held_invoice(sessions: sessionmaker[Session]) -> str:
    invoice_id = submit(sessions, build_invoice(folio="held"), empresa_ref_id="E1",
                        reference="HELD-1").invoice_id
    with sessions.begin() as s:
        breakers.open_(s, breakers.ACCOUNT_KEY, code="718", probe_after_s=30,
                       cause="718: the Finkok account is out of credits (timbres agotados)")
        s.execute(update(Invoice).where(Invoice.id == invoice_id).values(
            state="held", hold_key=breakers.ACCOUNT_KEY,
            errors=[{"code": "718", "message": "Timbres agotados", "kind": "held"}]))
    return invoice_id


def test_list_show_and_reset(ops_env: Path, runner: CliRunner,
                             sessions: sessionmaker[Session]) -> None:
    assert "no breaker is open" in runner.invoke(app, ["breaker", "list"]).stdout
    _held_invoice(sessions)

    listed = runner.invoke(app, ["breaker", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    [row] = json.loads(listed.stdout)
    assert (row["key"], row["state"], row["held_invoices"]) == ("finkok:account", "open", 1)
    assert "out of credits" in row["cause"]

    shown = runner.invoke(app, ["invoices", "show", "HELD-1"])
    assert shown.exit_code == 0, shown.output
    assert "held: 718: the Finkok account is out of credits" in shown.stdout
    assert "no NOK was sent" in shown.stdout
    stats = runner.invoke(app, ["stats"])
    assert "finkok:account" in stats.stdout and "out of credits" in stats.stdout

    # A reset needs a reason; a dry run changes nothing.
    assert runner.invoke(app, ["breaker", "reset", "finkok:account", "--yes"]).exit_code == 2
    dry = runner.invoke(app, ["breaker", "reset", "finkok:account", "--dry-run"])
    assert dry.exit_code == 0 and "dry run" in dry.stdout
    with sessions() as s:
        assert s.get(Breaker, "finkok:account").state == "open"  # type: ignore[union-attr]
    done = runner.invoke(app, ["breaker", "reset", "finkok:account", "--yes",
                               "--reason", "credits bought"])
    assert done.exit_code == 0, done.output
    with sessions() as s:
        assert s.get(Breaker, "finkok:account").state == "closed"  # type: ignore[union-attr]
        audit = s.scalars(select(AuditLog).where(AuditLog.action == "breaker-close")).one()
        assert audit.reason == "reset: credits bought" and audit.details == {"breaker": "finkok:account"}
    unknown = runner.invoke(app, ["breaker", "reset", "nope", "--yes", "--reason", "x"])
    assert unknown.exit_code == 1 and "no breaker 'nope'" in unknown.output
