from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from worker.settings import get_settings


@pytest.fixture()
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """A clean BILLING_* environment with the data dir in tmp; settings re-read."""
    import os

    for key in list(os.environ):
        if key.startswith("BILLING_") and not key.startswith("BILLING_TEST_") and key != "BILLING_SHARED_DIR":
            monkeypatch.delenv(key)
    monkeypatch.setenv("BILLING_DATA_DIR", str(tmp_path / "var"))
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


@pytest.fixture()
def runner() -> CliRunner:
    return CliRunner()
