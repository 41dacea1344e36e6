"""The bad-input corpus through `billing enqueue` (the real entry point, the real database):
each file refused with its reason on one line, nothing written, nothing published, and the
same process still takes a valid invoice afterwards."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from worker.cfdi.factory import build_invoice
from worker.cli import app
from worker.settings import get_settings

from .conftest import NOTHING, Counts, queued_messages
from .corpus import MAX_BYTES, BadInput, corpus

CASES = {case.name: case for case in corpus()}


@pytest.fixture()
def env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str, written: Counts
) -> Iterator[Path]:
    """A clean BILLING_* environment: the test database, a data dir in tmp, the corpus limit."""
    for key in list(os.environ):
        if key.startswith("BILLING_") and not key.startswith("BILLING_TEST_") and key != "BILLING_SHARED_DIR":
            monkeypatch.delenv(key)
    monkeypatch.setenv("BILLING_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("BILLING_DATABASE_URL", db_url)
    monkeypatch.setenv("BILLING_MAX_XML_BYTES", str(MAX_BYTES))
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def _enqueue(runner: CliRunner, path: Path, case: BadInput) -> tuple[int, dict[str, object], list[str]]:
    res = runner.invoke(app, ["enqueue", str(path), "--empresa", case.empresa,
                              "--reference", case.ref, "--json"])
    # A refusal is an orderly exit 1, never a crash (CliRunner keeps SystemExit as such).
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    lines = [ln for ln in res.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, res.output
    return res.exit_code, json.loads(lines[0]), [ln for ln in res.stderr.splitlines() if ln.strip()]


@pytest.mark.parametrize("name", list(CASES))
def test_refused_with_its_reason_and_nothing_written(
    name: str, env: Path, written: Counts
) -> None:
    case = CASES[name]
    path = env / f"{name}.xml"
    path.write_bytes(case.data)
    code, line, stderr = _enqueue(CliRunner(), path, case)
    assert code == 1
    assert (line["status"], line["reason"]) == ("refused", case.reason), line
    message = str(line["message"])
    for word in case.words:
        assert word.lower() in message.lower(), (word, message)
    assert stderr == [f"{path}: refused ({case.reason}): {message}"]  # one line per file
    assert written() == NOTHING
    assert queued_messages(env / "var") == 0


def test_after_the_whole_corpus_a_valid_invoice_goes_in(env: Path, written: Counts) -> None:
    """One process, one manifest: every bad file refused with its reason, then a valid
    invoice stored and published; the same process takes another one afterwards."""
    manifest = env / "corpus.csv"
    with manifest.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["file", "empresaRefId", "reference", "pedidoga"])
        for case in CASES.values():
            (env / f"{case.name}.xml").write_bytes(case.data)
            out.writerow([f"{case.name}.xml", case.empresa, case.ref, ""])
        (env / "valid.xml").write_bytes(build_invoice(folio="valid-after-corpus"))
        out.writerow(["valid.xml", "E1", "GOOD-1", "P1"])
    runner = CliRunner()
    res = runner.invoke(app, ["enqueue", "--manifest", str(manifest), "--json"])
    assert res.exit_code == 1 and (res.exception is None or isinstance(res.exception, SystemExit))
    lines = [json.loads(ln) for ln in res.stdout.splitlines() if ln.strip()]
    assert [(ln["status"], ln.get("reason")) for ln in lines] == [
        *[("refused", case.reason) for case in CASES.values()], ("created", None)
    ]
    assert written() == {**NOTHING, "invoices": 1}
    assert queued_messages(env / "var") == 1

    again = env / "valid2.xml"
    again.write_bytes(build_invoice(folio="after-corpus-2"))
    res = runner.invoke(app, ["enqueue", str(again), "--empresa", "E1", "--reference", "GOOD-2",
                              "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["status"] == "created"
    assert written()["invoices"] == 2 and queued_messages(env / "var") == 2
