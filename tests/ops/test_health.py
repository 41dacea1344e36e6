"""`billing health` against real parts: the test database (SQLite and PostgreSQL), the
Finkok and SIF sandboxes over HTTP, and, for the all-green run, a real `billing worker`
and `billing beat` on Redis. Negative controls: a wrong Finkok password, dead ports, a
stale or missing sweep, low credits, an unmigrated database; each gives exit 1 and names
the component and the setting, never the secret."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from tests.ops.conftest import EMISOR, billing_worker_and_beat
from worker.cli import app
from worker.db.models import utcnow
from worker.finkok.client import FinkokClient
from worker.ops.credits import poll_credits
from worker.ops.heartbeats import beat
from worker.sandbox.finkok import FinkokSandbox
from worker.sandbox.sif import SifSandbox
from worker.settings import get_settings

DEAD = "http://127.0.0.1:1"  # port 1: connection refused at once
WRONG_PASSWORD = "Wr0ng-finkok-pw-93"


@pytest.fixture()
def env(ops_env: Path, monkeypatch: pytest.MonkeyPatch, finkok: FinkokSandbox,
        sif: SifSandbox) -> Path:
    """The ops environment pointed at the sandboxes."""
    monkeypatch.setenv("BILLING_FINKOK_ENVIRONMENT", finkok.url)
    monkeypatch.setenv("BILLING_SIF_BASE_URL", sif.url)
    get_settings.cache_clear()
    return ops_env


def _health(runner: CliRunner, *args: str) -> tuple[int, str]:
    res = runner.invoke(app, ["health", *args])
    return res.exit_code, res.output


def _lines(output: str) -> dict[str, str]:
    """component -> its line."""
    out = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in ("ok", "FAIL"):
            out[parts[1]] = line
    return out


def test_sandboxes_and_database_are_healthy(env: Path, runner: CliRunner) -> None:
    code, out = _health(runner, "--only", "database,broker,finkok,sif,credits")
    assert code == 0, out
    lines = _lines(out)
    assert list(lines) == ["database", "broker", "finkok", "sif", "credits"]
    assert all(line.startswith("ok ") for line in lines.values()), out
    assert "(head)" in lines["database"]
    assert "credentials accepted" in lines["finkok"]


def test_wrong_finkok_password_is_exit_1_naming_finkok(
    env: Path, runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BILLING_FINKOK_PASSWORD", WRONG_PASSWORD)
    get_settings.cache_clear()
    code, out = _health(runner, "--only", "finkok,sif")
    assert code == 1, out
    lines = _lines(out)
    assert lines["finkok"].startswith("FAIL")
    assert "refused (Invalid Username or Password)" in lines["finkok"]
    assert "BILLING_FINKOK_PASSWORD" in lines["finkok"]
    assert lines["sif"].startswith("ok")
    assert WRONG_PASSWORD not in out


def test_dead_ports_name_finkok_and_sif(env: Path, runner: CliRunner,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BILLING_FINKOK_ENVIRONMENT", DEAD)
    monkeypatch.setenv("BILLING_SIF_BASE_URL", DEAD + "/mcs/sif")
    get_settings.cache_clear()
    code, out = _health(runner, "--only", "finkok,sif", "--json")
    assert code == 1, out
    body = json.loads(out)
    assert body["ok"] is False
    checks = {c["component"]: c for c in body["checks"]}
    assert not checks["finkok"]["ok"] and checks["finkok"]["setting"] == "BILLING_FINKOK_ENVIRONMENT"
    assert "127.0.0.1:1" in checks["finkok"]["detail"]
    assert not checks["sif"]["ok"] and checks["sif"]["setting"] == "BILLING_SIF_BASE_URL"


def test_dead_database_and_broker(ops_env: Path, runner: CliRunner,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BILLING_DATABASE_URL", "postgresql://billing:db-Secret-77@127.0.0.1:1/x")
    monkeypatch.setenv("BILLING_BROKER_URL", "redis://:redis-Secret-88@127.0.0.1:1/0")
    get_settings.cache_clear()
    started = time.monotonic()
    code, out = _health(runner, "--only", "database,broker,workers,beat", "--timeout", "1")
    assert time.monotonic() - started < 15
    assert code == 1
    lines = _lines(out)
    assert set(lines) == {"database", "broker", "workers", "beat"}
    assert all(line.startswith("FAIL") for line in lines.values()), out
    assert "BILLING_DATABASE_URL" in lines["database"] and "BILLING_BROKER_URL" in lines["broker"]
    assert "db-Secret-77" not in out and "redis-Secret-88" not in out


def test_unmigrated_database_says_run_db_upgrade(ops_env: Path, runner: CliRunner,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BILLING_DATABASE_URL", f"sqlite:///{ops_env / 'empty.db'}")
    get_settings.cache_clear()
    code, out = _health(runner, "--only", "database")
    assert code == 1
    assert "run `billing db upgrade`" in _lines(out)["database"]


def test_beat_fresh_stale_and_missing(env: Path, runner: CliRunner,
                                      sessions: sessionmaker[Session]) -> None:
    code, out = _health(runner, "--only", "beat")
    assert code == 1 and "no sweep recorded yet" in out and "BILLING_SWEEP_INTERVAL_S" in out
    with sessions.begin() as db:
        beat(db, "sweep", interval_s=15.0, at=utcnow() - timedelta(seconds=20))
    code, out = _health(runner, "--only", "beat")
    assert code == 0, out
    with sessions.begin() as db:  # 4 intervals of 15 s is the limit (beat_stale_intervals)
        beat(db, "sweep", interval_s=15.0, at=utcnow() - timedelta(seconds=90))
    code, out = _health(runner, "--only", "beat")
    assert code == 1 and "last sweep 90 s ago" in out, out


def test_credits_polled_from_the_sandbox(env: Path, runner: CliRunner, finkok: FinkokSandbox,
                                         sessions: sessionmaker[Session],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """poll_credits asks the sandbox's report_credit; health fails below credits_min."""
    monkeypatch.setenv("BILLING_CREDITS_RFCS", f"{EMISOR}, EKU9003173C9")
    get_settings.cache_clear()
    settings = get_settings()
    with FinkokClient.from_settings(settings) as client:
        client.registration_add(EMISOR, type_user="P")  # prepaid: reports a figure
        client.registration_assign(EMISOR, 40)
        readings = poll_credits(sessions, client, settings)
    assert [(r.taxpayer_id, r.credits, r.error) for r in readings] == [
        (EMISOR, 40, None), ("EKU9003173C9", None, None)]  # the other is not a customer
    code, out = _health(runner, "--only", "credits")
    assert code == 1
    assert f"{EMISOR} has 40 (below 100)" in out and "BILLING_CREDITS_MIN" in out
    monkeypatch.setenv("BILLING_CREDITS_MIN", "10")
    get_settings.cache_clear()
    code, out = _health(runner, "--only", "credits")
    assert code == 0 and f"{EMISOR} 40" in out, out


def test_bad_component_names_are_exit_2(runner: CliRunner) -> None:
    res = runner.invoke(app, ["health", "--only", "database,finkk"])
    assert res.exit_code == 2
    assert "finkk" in res.output


# --- all green with a real worker and beat --------------------------------------------------


@pytest.fixture()
def stack_env(env: Path, redis_url: str, db_url: str, finkok: FinkokSandbox,
              monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {
        "BILLING_DATA_DIR": str(env / "var"), "BILLING_DATABASE_URL": db_url,
        "BILLING_BROKER_URL": redis_url, "BILLING_BROKER_KEY_PREFIX": f"h{os.getpid()}-{env.name}:",
        "BILLING_FINKOK_ENVIRONMENT": finkok.url, "BILLING_SWEEP_INTERVAL_S": "1",
        "BILLING_CREDITS_POLL_INTERVAL_S": "1", "BILLING_CREDITS_RFCS": EMISOR,
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    with FinkokClient.from_settings(get_settings()) as client:
        client.registration_add(EMISOR, type_user="P")
        client.registration_assign(EMISOR, 5000)
    return values


@pytest.fixture()
def worker_and_beat(stack_env: dict[str, str], env: Path) -> Iterator[None]:
    with billing_worker_and_beat(stack_env, env, f"health-{os.getpid()}"):
        yield



@pytest.mark.slow
def test_all_green_with_a_real_worker_and_beat(
    worker_and_beat: None, runner: CliRunner, env: Path
) -> None:
    """Every component, exit 0; the sweep heartbeat and the credit reading were written
    by the real tasks (billing.sweep, billing.poll_credits) through the real beat."""
    deadline = time.monotonic() + 90
    started = time.monotonic()
    code, out = 1, ""
    while time.monotonic() < deadline:
        code, out = _health(runner)
        if code == 0 and f"{EMISOR} 5000" in out:
            break
        time.sleep(1)
    logs = "\n".join(p.read_text()[-2000:] for p in env.glob("*.log"))
    assert code == 0, out + "\n" + logs
    lines = _lines(out)
    assert list(lines) == ["database", "broker", "workers", "beat", "finkok", "sif", "credits"]
    # `billing worker` runs three pools (stamp, notify, maintenance): each answers
    assert "3 answered ping: maintenance-health-" in lines["workers"]
    assert "notify-health-" in lines["workers"] and "stamp-health-" in lines["workers"]
    assert "every 1 s" in lines["beat"]
    assert f"{EMISOR} 5000" in lines["credits"]
    print(f"all green {time.monotonic() - started:.1f} s after starting worker and beat")
