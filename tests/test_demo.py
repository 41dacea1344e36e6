"""`billing demo` (the README's main-job command) runs green with a small N; with
--keep-running it exports the stack for other commands and a signal stops all of it."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from worker.cli import app


@pytest.mark.slow
def test_demo_runs_every_scenario_green(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("BILLING_") and not key.startswith("BILLING_TEST_"):
            monkeypatch.delenv(key)
    from worker.settings import get_settings

    get_settings.cache_clear()
    data = tmp_path / "demo"
    res = CliRunner().invoke(app, ["demo", "--count", "8", "--data-dir", str(data)])
    assert res.exit_code == 0, res.output + res.stderr
    assert "every invoice settled as expected" in res.stdout
    assert "0 documents stamped twice" in res.stdout
    pdfs = sorted(data.glob("pdfs/*.pdf"))
    assert len(pdfs) == 7  # every OK that SIF received carries a PDF; the rejection has none
    assert all(p.read_bytes().startswith(b"%PDF-") for p in pdfs)
    for word in ("CFDI40143", "307", "pending", "fault", "hang", "normal"):  # every scenario ran
        assert word in res.stdout
    # ... and one stamped invoice was cancelled at SAT, its acuse kept
    assert "cancellation at SAT: DEMO-" in res.stdout and "motivo 02 -> cancelled" in res.stdout
    from sqlalchemy import create_engine, text

    engine = create_engine(f"sqlite:///{data / 'billing.db'}")
    with engine.connect() as conn:
        state, acuse = conn.execute(text("SELECT state, length(acuse) FROM cancellations")).one()
    engine.dispose()
    assert state == "cancelled" and acuse > 0


def _descendants(root: int) -> set[int]:
    """Every live descendant of ``root``, from /proc (parent pid is field 4 of stat)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if fields[0] != "Z":
            parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_for(path: Path, marker: str, proc: Any, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = path.read_text() if path.exists() else ""
        if marker in text:
            return text
        assert proc.poll() is None, f"the demo ended early:\n{text}"
        time.sleep(0.5)
    raise AssertionError(f"no {marker!r} within {timeout_s} s:\n{path.read_text()}")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_keep_running_exports_the_stack_and_a_signal_stops_every_process(
    tmp_path: Path, sig: signal.Signals
) -> None:
    """The real `billing demo --keep-running`: once settled it prints the table and the
    export lines; `billing invoices list` with those exports lists the demo's invoices;
    SIGTERM (or SIGINT) then stops every process the demo started."""
    from tests.cli.process import billing_argv, clean_env, run_billing

    out = tmp_path / "demo.out"
    with out.open("w") as sink:
        proc = subprocess.Popen(
            [*billing_argv(), "demo", "--count", "3", "--keep-running",
             "--data-dir", str(tmp_path / "demo")],
            env=clean_env(tmp_path), cwd=tmp_path, stdout=sink, stderr=subprocess.STDOUT,
            text=True)
    children: set[int] = set()
    try:
        text = _wait_for(out, "# stack running", proc, timeout_s=240)
        assert "every invoice settled as expected" in text
        assert text.index("billing demo: 3 invoices settled") < text.index("export BILLING_")
        exports = dict(shlex.split(line)[1].split("=", 1) for line in text.splitlines()
                       if line.startswith("export "))
        assert {"BILLING_DATABASE_URL", "BILLING_BROKER_URL", "BILLING_DATA_DIR",
                "BILLING_FINKOK_ENVIRONMENT", "BILLING_SIF_BASE_URL"} <= set(exports)

        listed = run_billing(["invoices", "list", "--json"], {**clean_env(tmp_path), **exports},
                             cwd=tmp_path)
        assert listed.returncode == 0, listed.stderr
        invoices = json.loads(listed.stdout)["invoices"]
        assert sorted(i["reference"] for i in invoices) == ["DEMO-00000", "DEMO-00001", "DEMO-00002"]

        children = _descendants(proc.pid)
        assert len(children) >= 4 and all(_alive(pid) for pid in children)  # the control

        proc.send_signal(sig)
        assert proc.wait(90) == 0, out.read_text()
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [pid for pid in children if _alive(pid)] == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for pid in children:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
