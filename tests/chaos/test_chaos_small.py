"""The chaos run (bench/chaos.py) at CI size: real processes, real SIGKILLs, real HTTP.

Each variant starts the Finkok and SIF sandboxes, two Celery workers and the beat,
enqueues 100 sealed invoices (5 bound to be rejected) while Finkok hangs, faults, drops
connections and forgets its stamps (guard_307=False), SIF answers 5xx/404, workers are
SIGKILLed and restarted, the broker is restarted (when the run owns one) and database
connections are terminated. The figures come from the sandboxes' own records and the
database; every must-be-zero figure must be zero.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.chaos import (
    MUST_BE_ZERO,
    ChaosOptions,
    ChaosReport,
    run_chaos,
    servers_reachable,
)
from tests.conftest import POSTGRES_URL, REDIS_URL, server_missing

pytestmark = pytest.mark.slow


def _assert_clean(report: ChaosReport) -> None:
    figures = {k: report.figures[k] for k in MUST_BE_ZERO}
    assert figures == dict.fromkeys(MUST_BE_ZERO, 0), report.findings[:20]
    assert report.unexpected == 0, report.findings[:20]
    assert report.ok
    assert report.result_line().startswith(
        "RESULT double_stamps=0 unsettled=0 undelivered=0 conflicting=0 xml_mismatch=0 "
        "secrets_in_logs=0 settle_s="
    )
    # The faults did happen (about 10 % hangs, 5 % faults, 5 % drops while they last).
    faults = sum(report.finkok_events.get(k, 0) for k in ("hang", "fault", "drop"))
    assert faults >= 1, report.finkok_events
    assert report.states == {"stamped": 95, "rejected": 5}
    assert report.finkok_events.get("refused_CFDI40143", 0) >= 5  # more when a kill cut one short
    assert report.kills >= 2


def test_chaos_embedded(tmp_path: Path) -> None:
    report = run_chaos(ChaosOptions(
        count=100, workers=2, concurrency=3, seconds=20, kill_every_s=4, backend="embedded",
        data_dir=tmp_path / "chaos", settle_timeout_s=180,
    ))
    _assert_clean(report)
    assert report.backend == "embedded"
    assert any("no broker server to restart" in e for e in report.events), report.events
    assert any("SQLite: no database server" in e for e in report.events), report.events


def test_chaos_postgres_redis(tmp_path: Path) -> None:
    opts = ChaosOptions(
        count=100, workers=2, concurrency=3, seconds=20, kill_every_s=4, backend="servers",
        postgres_url=POSTGRES_URL, redis_url=REDIS_URL, data_dir=tmp_path / "chaos",
        settle_timeout_s=180,
    )
    why = servers_reachable(opts)
    if why:
        server_missing("PostgreSQL and Redis", why)
    report = run_chaos(opts)
    _assert_clean(report)
    assert report.backend == "servers"
    broker = next(e for e in report.events if "redis" in e.lower())
    assert "restarted" in broker or "not this run's own server" in broker, report.events
    assert any("PostgreSQL: terminated" in e for e in report.events), report.events


def test_the_checks_see_a_double_stamp(tmp_path: Path) -> None:
    """The negative control: break the timing rule on purpose (a retry sooner than a hung
    call is processed, against a PAC without the 307 guard) and the run must report the
    double stamps it causes and fail. A check that cannot fail proves nothing."""
    report = run_chaos(ChaosOptions(
        count=4, workers=1, concurrency=2, seconds=4, kill_every_s=0, restarts=False,
        backend="embedded", data_dir=tmp_path / "chaos", settle_timeout_s=90,
        # Every invoice's first call hangs 6 s; the client gives up after 2 s and retries
        # (ask `stamped`: 603, then `stamp`) long before the hung call stamps as well.
        normal_rules=["hang_once"],
        finkok_faults={"hang_rate": 0.0, "fault_rate": 0.0, "drop_rate": 0.0, "hang_s": 6.0},
        settings_env={"BILLING_STAMP_BACKOFF_BASE_S": "0.2", "BILLING_STAMP_BACKOFF_MAX_S": "0.4"},
    ))
    assert report.figures["double_stamps"] >= 1, report.rows
    assert not report.ok
    assert report.result_line().startswith("RESULT double_stamps=")
    assert any("stamped more than once" in f for f in report.findings), report.findings
