"""`billing enqueue` and `billing config` through the real entry point and database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from worker.cfdi.factory import build_invoice
from worker.cli import app
from worker.db.models import Invoice


@pytest.fixture()
def env(cli_env: Path, db_url: str, sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BILLING_DATABASE_URL", db_url)
    return cli_env


def _queued_messages(data_dir: Path) -> int:
    return len(list((data_dir / "var" / "broker" / "queue").glob("*.msg")))


def _rows(sessions: sessionmaker[Session]) -> int:
    with sessions() as s:
        return s.scalar(select(func.count()).select_from(Invoice)) or 0


def test_enqueue_one_file_stores_and_rings_the_broker(
    env: Path, runner: CliRunner, sessions: sessionmaker[Session]
) -> None:
    xml = env / "0016921514.xml"
    xml.write_bytes(build_invoice(folio="7"))
    res = runner.invoke(app, ["enqueue", str(xml), "--empresa", "E1", "--pedidoga", "P1", "--json"])
    assert res.exit_code == 0, res.output
    line = json.loads(res.stdout.strip())
    assert (line["status"], line["reference"], line["published"]) == ("created", "0016921514", True)
    assert _queued_messages(env) == 1  # a real message in the filesystem broker
    with sessions() as s:
        row = s.get(Invoice, line["invoice_id"])
        assert row is not None and row.xml == xml.read_bytes() and row.pedidoga == "P1"

    again = runner.invoke(app, ["enqueue", str(xml), "--empresa", "E1", "--json"])
    assert again.exit_code == 0
    assert json.loads(again.stdout)["status"] == "existing"
    assert _queued_messages(env) == 1 and _rows(sessions) == 1


def test_refused_file_exits_1_with_a_one_line_reason(
    env: Path, runner: CliRunner, sessions: sessionmaker[Session]
) -> None:
    bad = env / "bad.xml"
    bad.write_bytes(b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>')
    res = runner.invoke(app, ["enqueue", str(bad), "--empresa", "E1", "--reference", "R1"])
    assert res.exit_code == 1
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert lines == [f"{bad}: refused (dtd_forbidden): a DTD or entity declaration is not allowed "
                     "in a CFDI (XXE risk)"]
    assert _rows(sessions) == 0


def test_manifest_csv_and_jsonl(env: Path, runner: CliRunner, sessions: sessionmaker[Session]) -> None:
    for i in range(3):
        (env / f"f{i}.xml").write_bytes(build_invoice(folio=f"10{i}"))
    (env / "broken.xml").write_bytes(b"<cfdi:Comprobante")
    csv_manifest = env / "m.csv"
    csv_manifest.write_text(
        "file,empresaRefId,reference,pedidoga\n"
        "f0.xml,E1,R0,P0\nf1.xml,E1,R1,\nbroken.xml,E1,R9,\nmissing.xml,E1,R8,\n"
    )
    res = runner.invoke(app, ["enqueue", "--manifest", str(csv_manifest), "--json"])
    assert res.exit_code == 1
    statuses = [json.loads(ln)["status"] for ln in res.stdout.splitlines()]
    assert statuses == ["created", "created", "refused", "error"]
    assert "m.csv:3:broken.xml: refused (not_well_formed)" in res.stderr
    assert "m.csv:4:missing.xml: error (unreadable)" in res.stderr

    jsonl = env / "m.jsonl"
    jsonl.write_text(json.dumps({"file": "f2.xml", "empresaRefId": "E1", "reference": "R2"}) + "\n")
    res = runner.invoke(app, ["enqueue", "--manifest", str(jsonl)])
    assert res.exit_code == 0, res.output
    assert _rows(sessions) == 3

    # ids are taken as written, and refused like everywhere else when padded
    (env / "f3.xml").write_bytes(build_invoice(folio="103"))
    padded = env / "padded.csv"
    padded.write_text("file,empresaRefId,reference,pedidoga\nf3.xml,E1, R3 ,\n")
    res = runner.invoke(app, ["enqueue", "--manifest", str(padded), "--json"])
    assert res.exit_code == 1
    line = json.loads(res.stdout)
    assert line["status"] == "refused" and "leading or trailing spaces" in line["message"]
    assert _rows(sessions) == 3


def test_config_masks_secrets(cli_env: Path, runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    secret_file = cli_env / "sif_secret"
    secret_file.write_text("sif-very-secret\n")
    monkeypatch.setenv("BILLING_FINKOK_PASSWORD", "finkok-very-secret")
    monkeypatch.setenv("BILLING_SIF_SECRET_FILE", str(secret_file))
    monkeypatch.setenv("BILLING_DATABASE_URL", "postgresql://u:db-very-secret@h/db")
    res = runner.invoke(app, ["config", "--json"])
    assert res.exit_code == 0, res.output
    assert "very-secret" not in res.output
    values = json.loads(res.stdout)
    assert values["finkok_password"] == "********" and values["sif_secret"] == "********"
    assert values["database_url"] == "postgresql://u:********@h/db"
    from worker.settings import get_settings

    get_settings.cache_clear()
    assert get_settings().sif_secret.get_secret_value() == "sif-very-secret"  # read from the file


def test_db_upgrade_creates_the_schema(cli_env: Path, runner: CliRunner) -> None:
    res = runner.invoke(app, ["db", "upgrade"])
    assert res.exit_code == 0, res.output
    assert (cli_env / "var" / "billing.db").exists()
    from worker.db.migrate import current_head

    res = runner.invoke(app, ["db", "current"])
    head = current_head()
    assert f"database: {head}  code head: {head}" in res.stdout


def test_settings_repr_never_shows_override_secrets() -> None:
    from worker.settings import load_settings

    s = load_settings(sif_overrides={"E1": {"secret": "override-very-secret", "base_url": "http://x"}})
    assert "override-very-secret" not in repr(s) and "override-very-secret" not in str(s)
    assert s.masked()["sif_overrides"] == {"E1": {"secret": "********", "base_url": "http://x"}}
