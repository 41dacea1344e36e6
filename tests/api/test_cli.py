"""`billing api-keys create|list|revoke` and `billing api` through the real entry point."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from worker.api.keys import authenticate
from worker.cfdi.factory import build_invoice
from worker.cli import app
from worker.db.migrate import upgrade
from worker.settings import get_settings


def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith("BILLING_") and not key.startswith("BILLING_TEST_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("BILLING_DATA_DIR", str(tmp_path / "var"))


@pytest.fixture()
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str,
        sessions: sessionmaker[Session]) -> Iterator[CliRunner]:
    _clean_env(monkeypatch, tmp_path)
    monkeypatch.setenv("BILLING_DATABASE_URL", db_url)
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def test_create_prints_the_key_once_list_never_shows_it_revoke_stops_it(
    cli: CliRunner, sessions: sessionmaker[Session]
) -> None:
    made = cli.invoke(app, ["api-keys", "create", "--name", "SAP prod", "--empresa", "E2", "--empresa", "E1"])
    assert made.exit_code == 0, made.output
    key = made.stdout.strip()
    _, prefix, secret = key.split("_", 2)
    principal = authenticate(sessions, key)
    assert principal is not None and principal.empresa_ref_ids == ["E1", "E2"]
    assert "not shown again" in made.stderr

    listed = cli.invoke(app, ["api-keys", "list", "--json"])
    assert listed.exit_code == 0
    (row,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert (row["name"], row["prefix"], row["empresaRefIds"], row["revokedAt"]) == (
        "SAP prod", prefix, ["E1", "E2"], None,
    )
    table = cli.invoke(app, ["api-keys", "list"])
    assert secret not in listed.stdout + table.stdout

    revoked = cli.invoke(app, ["api-keys", "revoke", row["id"]])
    assert revoked.exit_code == 0 and "revoked" in revoked.stdout
    assert authenticate(sessions, key) is None
    again = json.loads(cli.invoke(app, ["api-keys", "list", "--json"]).stdout)
    assert again["revokedAt"] is not None


def test_all_empresas_key_and_usage_errors(cli: CliRunner, sessions: sessionmaker[Session]) -> None:
    made = cli.invoke(app, ["api-keys", "create", "--name", "ops", "--all-empresas"])
    assert made.exit_code == 0
    principal = authenticate(sessions, made.stdout.strip())
    assert principal is not None and principal.allows("ANY")

    for args in (["--name", "x"], ["--name", "x", "--empresa", "E1", "--all-empresas"],
                 ["--name", "x", "--empresa", "bad id "], ["--name", "x", "--empresa", ".."],
                 ["--name", "x", "--empresa", "a\\b"]):
        res = cli.invoke(app, ["api-keys", "create", *args])
        assert res.exit_code == 2 and "bk_" not in res.stdout
    assert cli.invoke(app, ["api-keys", "revoke", "nope"]).exit_code == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_billing_api_serves_on_the_given_port(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _clean_env(monkeypatch, tmp_path)
    url = f"sqlite:///{tmp_path / 'api.db'}"
    upgrade(url)
    monkeypatch.setenv("BILLING_DATABASE_URL", url)
    runner = CliRunner()
    get_settings.cache_clear()
    key = runner.invoke(app, ["api-keys", "create", "--name", "erp", "--empresa", "E1"]).stdout.strip()
    get_settings.cache_clear()

    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", "from worker.cli import app; app()", "api", "--host", "127.0.0.1",
         "--port", str(port)],
        env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "billing api did not start"
            time.sleep(0.1)
        res = httpx.post(
            f"{base}/v1/invoices", params={"empresaRefId": "E1", "reference": "R-cli"},
            content=build_invoice(), headers={"Content-Type": "application/xml", "X-API-Key": key},
        )
        assert res.status_code == 201, res.text
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=15)
    log = out.decode()
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status tells why.
    assert proc.returncode in (0, -15), log
    assert "Application shutdown complete" in log
    assert "POST /v1/invoices 201" in log  # our access log, on the configured logging
    assert key.split("_", 2)[2] not in log and "R-cli" not in log
