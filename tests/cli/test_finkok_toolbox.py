"""`billing finkok ...` as real subprocesses against the Finkok sandbox over HTTP: every
read answers (text and --json), the registration writes are dry-run / confirmed / audited,
and failures are one line (a refusal exit 1, Finkok unreachable exit 2), never the password."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.cli.process import clean_env, dead_port, run_billing
from worker.cfdi.factory import build_invoice
from worker.db.migrate import upgrade
from worker.db.models import AuditLog
from worker.db.session import create_db_engine, session_factory
from worker.finkok.client import FinkokClient
from worker.sandbox.finkok import FinkokSandbox

EMISOR = "AAA010101AAA"
RECEPTOR = "URE180429TM6"
PASSWORD = "toolbox-Secret-9"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[FinkokSandbox]:
    with FinkokSandbox(password=PASSWORD) as sb:
        yield sb


@pytest.fixture()
def env(tmp_path: Path, sandbox: FinkokSandbox) -> dict[str, str]:
    sandbox.reset()
    url = f"sqlite:///{tmp_path / 'billing.db'}"
    upgrade(url)
    return clean_env(tmp_path, BILLING_FINKOK_ENVIRONMENT=sandbox.url,
                     BILLING_FINKOK_PASSWORD=PASSWORD, BILLING_DATABASE_URL=url)


def _ok(args: list[str], env: dict[str, str], cwd: Path) -> str:
    res = run_billing(["finkok", *args], env, cwd)
    assert res.returncode == 0, (args, res.stdout, res.stderr)
    assert PASSWORD not in res.stdout + res.stderr
    return res.stdout


def _json(args: list[str], env: dict[str, str], cwd: Path) -> dict:  # type: ignore[type-arg]
    return json.loads(_ok([*args, "--json"], env, cwd))


def test_reads_answer_from_the_sandbox(env: dict[str, str], tmp_path: Path,
                                       sandbox: FinkokSandbox) -> None:
    xml = build_invoice(folio="toolbox")
    with FinkokClient(sandbox.url, "sandbox@example.com", PASSWORD) as client:
        stamp = client.stamp(xml)
    uid = stamp.uuid or ""
    pre = tmp_path / "sealed.xml"
    pre.write_bytes(xml)

    assert _json(["datetime"], env, tmp_path)["datetime"]
    assert "Finkok's time:" in _ok(["datetime"], env, tmp_path)
    report = _json(["report-uuid", EMISOR.lower()], env, tmp_path)
    assert [e["uuid"] for e in report["invoices"]] == [uid]
    assert f"{uid}  {stamp.fecha}" in _ok(["report-uuid", EMISOR, "--since", "2h"], env, tmp_path)
    assert _json(["report-uuid", EMISOR, "--until", "2d"], env, tmp_path)["invoices"] == []
    assert _json(["report-total", EMISOR], env, tmp_path)["total"] == 1

    out = tmp_path / "got.xml"
    _ok(["get-xml", uid, "--emisor", EMISOR, "--out", str(out)], env, tmp_path)
    assert out.read_text(encoding="utf-8") == stamp.xml
    assert _json(["get-xml", uid, "--emisor", EMISOR], env, tmp_path)["xml"] == stamp.xml

    status = _json(["sat-status", uid, "--emisor", EMISOR, "--receptor", RECEPTOR,
                    "--total", "116.00"], env, tmp_path)
    assert status["estado"] == "Vigente"
    assert _json(["stamped", str(pre)], env, tmp_path)["uuid"] == uid
    assert f"stamped: {uid}" in _ok(["stamped", str(pre)], env, tmp_path)
    assert _json(["query-pending", uid], env, tmp_path)["status"] == "F"
    assert "delivered to SAT" in _ok(["query-pending", uid], env, tmp_path)

    # refusals: one line, exit 1; a missing argument Finkok needs: exit 2
    never = tmp_path / "never.xml"
    never.write_bytes(build_invoice(folio="never-stamped"))
    res = run_billing(["finkok", "stamped", str(never)], env, tmp_path)
    assert res.returncode == 1 and res.stderr.strip().count("\n") == 0 and "603" in res.stderr
    res = run_billing(["finkok", "get-xml", "11111111-2222-3333-4444-555555555555", "--emisor",
                       EMISOR], env, tmp_path)
    assert res.returncode == 1 and "UUID Does not Exists" in res.stderr
    res = run_billing(["finkok", "get-xml", uid], env, tmp_path)  # no invoice holds it
    assert res.returncode == 2 and "--emisor" in res.stderr


def test_registration_writes_are_planned_confirmed_and_audited(
    env: dict[str, str], tmp_path: Path
) -> None:
    dry = _ok(["add", EMISOR, "--type", "P", "--dry-run"], env, tmp_path)
    assert f"dry run: would add customer {EMISOR} (prepaid)\nnow: RFC no encontrado" in dry
    assert _json(["customers"], env, tmp_path)["users"] == []  # the dry run changed nothing
    res = run_billing(["finkok", "add", EMISOR], env, tmp_path)
    assert res.returncode == 2 and "--reason" in res.stderr
    res = run_billing(["finkok", "add", EMISOR, "--reason", "onboarding"], env, tmp_path)
    assert res.returncode != 0 and f"add customer {EMISOR}" in res.stderr  # asked, no answer

    added = _json(["add", EMISOR, "--type", "P", "--reason", "onboarding", "--yes"], env, tmp_path)
    assert (added["success"], added["message"]) == (True, "Account Created successfully")
    assert "+100 stamps" in _ok(["assign", EMISOR, "100", "--reason", "paid", "--yes"], env, tmp_path)
    credits = _json(["credits", EMISOR], env, tmp_path)
    assert credits["entries"][0]["credit"] == 100
    _ok(["edit", EMISOR, "--status", "S", "--reason", "unpaid", "--yes"], env, tmp_path)
    [customer] = _json(["customers", "--rfc", EMISOR], env, tmp_path)["users"]
    assert (customer["status"], customer["credit"]) == ("S", 100)
    _ok(["switch", EMISOR, "--type", "O", "--reason", "on demand now", "--yes"], env, tmp_path)
    assert "on demand" in _ok(["customers"], env, tmp_path)

    refused = run_billing(["finkok", "assign", EMISOR, "5", "--reason", "r", "--yes"], env, tmp_path)
    assert refused.returncode == 1 and "The user is on demand type" in refused.stderr

    engine = create_db_engine(env["BILLING_DATABASE_URL"])
    with session_factory(engine)() as db:
        audit = list(db.scalars(select(AuditLog).order_by(AuditLog.id)))
    engine.dispose()
    assert [(a.action, a.reason) for a in audit] == [
        ("finkok-add", "onboarding"), ("finkok-assign", "paid"), ("finkok-edit", "unpaid"),
        ("finkok-switch", "on demand now"), ("finkok-assign", "r")]
    assert audit[0].details == {"taxpayer_id": EMISOR, "type_user": "P", "answer": {
        "success": True, "message": "Account Created successfully"}}
    assert audit[-1].details["answer"]["success"] is False  # type: ignore[index]
    assert all(PASSWORD not in json.dumps(a.details) for a in audit)


def test_failures_are_one_line(env: dict[str, str], tmp_path: Path) -> None:
    wrong = env | {"BILLING_FINKOK_PASSWORD": "not-the-password"}
    res = run_billing(["finkok", "datetime"], wrong, tmp_path)
    assert res.returncode == 1 and res.stdout == ""
    assert res.stderr.strip() == "error: Finkok refused: Invalid Username or Password"
    assert "not-the-password" not in res.stderr

    down = env | {"BILLING_FINKOK_ENVIRONMENT": f"http://127.0.0.1:{dead_port()}",
                  "BILLING_FINKOK_CONNECT_TIMEOUT_S": "0.5"}
    res = run_billing(["finkok", "report-uuid", EMISOR], down, tmp_path)
    assert res.returncode == 2 and res.stderr.strip().count("\n") == 0, res.stderr
    assert "FinkokNotSent" in res.stderr and "BILLING_FINKOK_ENVIRONMENT" in res.stderr
    assert PASSWORD not in res.stderr
