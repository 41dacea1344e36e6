"""`billing demo` (the README's main-job command) runs green with a small N."""

from __future__ import annotations

from pathlib import Path

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
