"""`billing invoices list|show` through the real entry point, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from worker.cli import app
from worker.db.models import Invoice

from .conftest import FOREIGN, OTHER_EMISOR, Fleet


def _list(runner: CliRunner, *args: str) -> dict:
    res = runner.invoke(app, ["invoices", "list", "--json", *args])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def _refs(page: dict) -> list[str]:
    return [r["reference"] for r in page["invoices"]]


# Every filter alone, and a few together; expected references, newest change first.
CASES = [
    ([], ["R-stamped", "R-stamping", "R-retry", "R-stamped2", "R-received", "R-stamped3",
          "R-pending", "R-rejected", "R-unknown", "R-failed"]),
    (["--state", "failed"], ["R-unknown", "R-failed"]),
    (["--state", "pending", "--state", "received"], ["R-received", "R-pending"]),
    (["--empresa", "E2"], ["R-stamped2"]),
    (["--reference", "R-rejected"], ["R-rejected"]),
    (["--emisor", OTHER_EMISOR.lower()], ["R-stamped2"]),
    (["--receptor", FOREIGN], ["R-rejected"]),
    (["--code", "708"], ["R-retry", "R-failed"]),
    (["--code", "cfdi40143"], ["R-rejected"]),
    (["--code", "ambiguous"], ["R-unknown"]),
    (["--since", "2h"], ["R-stamped", "R-stamping", "R-retry", "R-stamped2", "R-received",
                         "R-stamped3", "R-pending", "R-rejected"]),
    (["--since", "1d", "--until", "1h"], ["R-rejected", "R-unknown"]),
    (["--until", "2d"], ["R-failed"]),
    (["--state", "failed", "--code", "708", "--since", "4d"], ["R-failed"]),
    (["--state", "failed", "--code", "708", "--since", "2d"], []),
]


@pytest.mark.parametrize(("args", "expected"), CASES, ids=[" ".join(a) or "all" for a, _ in CASES])
def test_list_filters(ops_env: Path, runner: CliRunner, fleet: Fleet, args: list[str],
                      expected: list[str]) -> None:
    page = _list(runner, *args)
    assert _refs(page) == expected
    assert page["total"] == len(expected)


def test_list_iso_dates_paging_and_created_order(ops_env: Path, runner: CliRunner, fleet: Fleet) -> None:
    six_hours_ago = (fleet.now - timedelta(hours=6)).isoformat()  # with its +00:00 offset
    assert _refs(_list(runner, "--since", six_hours_ago, "--state", "failed")) == ["R-unknown"]
    naive = (fleet.now - timedelta(hours=6)).strftime("%Y-%m-%dT%H:%M:%S")  # naive: UTC
    assert _refs(_list(runner, "--since", naive, "--state", "failed")) == ["R-unknown"]
    assert _refs(_list(runner, "--since", "2000-01-01", "--until", "2999-12-31",
                       "--state", "failed")) == ["R-unknown", "R-failed"]

    page = _list(runner, "--limit", "3", "--offset", "2")
    assert _refs(page) == ["R-retry", "R-stamped2", "R-received"]
    assert (page["total"], page["offset"], page["limit"]) == (10, 2, 3)
    row = _list(runner, "--reference", "R-stamped2")["invoices"][0]
    assert row["id"] == fleet.ids["R-stamped2"] and row["sat_uuid"] == fleet.uuids["R-stamped2"]
    assert row["state"] == "stamped" and row["empresa_ref_id"] == "E2"
    assert _list(runner, "--reference", "R-retry")["invoices"][0]["error_codes"] == ["708"]

    # created_at is 5 minutes before each state change in the fleet: same order here
    by_created = _refs(_list(runner, "--by", "created", "--limit", "2"))
    assert by_created == ["R-stamped", "R-stamping"]


def test_list_refuses_bad_filters(ops_env: Path, runner: CliRunner, fleet: Fleet) -> None:
    res = runner.invoke(app, ["invoices", "list", "--state", "lost"])
    assert res.exit_code == 2 and "unknown state 'lost'" in res.stderr
    res = runner.invoke(app, ["invoices", "list", "--since", "yesterday"])
    assert res.exit_code == 2 and "'yesterday': expected an ISO date" in res.stderr


def test_list_table_for_people(ops_env: Path, runner: CliRunner, fleet: Fleet) -> None:
    res = runner.invoke(app, ["invoices", "list", "--state", "rejected"], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    assert fleet.ids["R-rejected"][:8] in res.stdout and "CFDI40143" in res.stdout
    assert "invoices 1-1 of 1" in res.stdout


def test_show_by_id_reference_and_uuid(ops_env: Path, runner: CliRunner, fleet: Fleet) -> None:
    invoice_id = fleet.ids["R-stamped"]
    for key in (invoice_id, "R-stamped", fleet.uuids["R-stamped"].lower(), invoice_id[:8],
                invoice_id[:13].upper()):
        res = runner.invoke(app, ["invoices", "show", key, "--json"])
        assert res.exit_code == 0, res.output
        assert json.loads(res.stdout)["id"] == invoice_id

    d = json.loads(runner.invoke(app, ["invoices", "show", "R-stamped", "--json"]).stdout)
    assert (d["state"], d["sat_uuid"], d["pedidoga"], d["attempts"]) == (
        "stamped", fleet.uuids["R-stamped"], "P-R-stamped", 1)
    assert d["stamped_at"].startswith(fleet.now.date().isoformat())
    assert [(a["operation"], a["outcome"], a["duration_ms"]) for a in d["stamp_attempts"]] == [
        ("stamp", "success", 300)]
    notes = {n["status"]: n for n in d["notifications"]}
    assert notes["OK"]["id"] == fleet.notes["ok"] and notes["OK"]["state"] == "delivered"
    assert [x["status_code"] for x in notes["OK"]["deliveries"]] == [204]
    assert notes["NOK"]["id"] == fleet.notes["old-nok"]

    failed = json.loads(runner.invoke(app, ["invoices", "show", "R-failed", "--json"]).stdout)
    assert failed["errors"] == [{"code": "708", "message": "No se pudo conectar al SAT",
                                 "kind": "transient"}]
    assert failed["error_kind"] == "exhausted"
    (nok,) = failed["notifications"]
    assert nok["deliveries"][0]["status_code"] is None
    assert nok["deliveries"][0]["error"] == "timeout: read timed out"


def test_show_for_people(ops_env: Path, runner: CliRunner, fleet: Fleet) -> None:
    res = runner.invoke(app, ["invoices", "show", "R-unknown"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert fleet.ids["R-unknown"] in out and "failed" in out
    assert "yes: the last Finkok call went unanswered" in out
    assert "ambiguous" in out and "read timeout" in out
    res = runner.invoke(app, ["invoices", "show", "R-stamped2"], env={"COLUMNS": "200"})
    assert "401" in res.stdout and "unauthorized" in res.stdout and "bad credentials" in res.stdout


def test_show_writes_exact_stamped_xml_and_pdf(ops_env: Path, runner: CliRunner, fleet: Fleet) -> None:
    xml, pdf = ops_env / "out.xml", ops_env / "out.pdf"
    res = runner.invoke(app, ["invoices", "show", "R-stamped", "--xml", str(xml), "--pdf", str(pdf)])
    assert res.exit_code == 0, res.output
    assert xml.read_bytes() == fleet.stamped_xml["R-stamped"]
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF-")
    from pypdf import PdfReader

    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)
    assert fleet.uuids["R-stamped"] in text.replace("\n", "")


def test_show_refusals(ops_env: Path, runner: CliRunner, fleet: Fleet,
                       sessions: sessionmaker[Session]) -> None:
    res = runner.invoke(app, ["invoices", "show", "R-failed", "--xml", str(ops_env / "x.xml")])
    assert res.exit_code == 1 and "is failed: it has no stamped XML" in res.stderr
    assert not (ops_env / "x.xml").exists()

    res = runner.invoke(app, ["invoices", "show", "nope"])
    assert res.exit_code == 1 and "no invoice with id, SAT UUID or reference 'nope'" in res.stderr

    with sessions.begin() as s:  # the same reference in another empresa
        other = s.get(Invoice, fleet.ids["R-stamped3"])
        assert other is not None
        other.reference, other.empresa_ref_id = "R-stamped", "E3"
    res = runner.invoke(app, ["invoices", "show", "R-stamped"])
    assert res.exit_code == 1 and "is held by 2 invoices" in res.stderr
    assert fleet.ids["R-stamped3"] in res.stderr and "(empresa E3)" in res.stderr
    res = runner.invoke(app, ["invoices", "show", "R-stamped", "--empresa", "E3", "--json"])
    assert res.exit_code == 0
    assert json.loads(res.stdout)["id"] == fleet.ids["R-stamped3"]
