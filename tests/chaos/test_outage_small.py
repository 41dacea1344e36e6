"""The outage scenario (bench/outage.py) at CI size: Finkok drops every connection, then
answers 708, then 718, and SIF answers 503, while invoices flow with the default attempt
budgets; then every fault stops. No fine document may get a NOK, and everything settles."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.chaos import MUST_BE_ZERO, ChaosOptions
from bench.outage import run_outage

pytestmark = pytest.mark.slow


def test_outage_embedded(tmp_path: Path) -> None:
    report = run_outage(ChaosOptions(
        count=40, workers=2, concurrency=2, seconds=16, backend="embedded",
        data_dir=tmp_path / "outage", settle_timeout_s=180,
    ))
    figures = {k: report.figures[k] for k in (*MUST_BE_ZERO, "false_noks")}
    assert figures == dict.fromkeys(figures, 0), report.findings[:20]
    assert report.ok and report.unexpected == 0, report.findings[:20]
    assert report.states == {"stamped": 38, "rejected": 2}
    line = report.result_line()
    assert " false_noks=0 " in line and " calls_while_open=" in line and " recovered_s=" in line
    # The breaker did open (the scenario tested what it means to test).
    assert any("=open" in row[1] for row in report.rows if row[0] == "breaker states seen"), \
        report.rows
