"""`billing sample`: sealed test invoices and a manifest that `billing enqueue` accepts as is."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from worker.cli import app
from worker.db.models import Invoice


@pytest.fixture()
def env(cli_env: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BILLING_DATABASE_URL", db_url)
    return cli_env


def test_sample_then_enqueue_the_manifest(env: Path, runner: CliRunner,
                                          sessions: sessionmaker[Session]) -> None:
    out = env / "samples"
    made = runner.invoke(app, ["sample", "--count", "3", "--out", str(out), "--empresa", "E9"])
    assert made.exit_code == 0, made.output
    assert sorted(p.name for p in out.iterdir()) == [
        "SAMPLE-00001.xml", "SAMPLE-00002.xml", "SAMPLE-00003.xml", "manifest.csv"]
    assert f"billing enqueue --manifest {out / 'manifest.csv'}" in made.stdout
    queued = runner.invoke(app, ["enqueue", "--manifest", str(out / "manifest.csv")])
    assert queued.exit_code == 0, queued.output
    with sessions() as s:  # every sample passed intake's checks (strict by default)
        refs = s.scalars(select(Invoice.reference).where(Invoice.empresa_ref_id == "E9")).all()
        assert sorted(refs) == ["SAMPLE-00001", "SAMPLE-00002", "SAMPLE-00003"]
        assert s.scalar(select(func.count()).select_from(Invoice)) == 3
