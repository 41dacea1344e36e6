"""`billing stats` on a fleet with known times: every number checked."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from worker.cli import app
from worker.db.models import utcnow
from worker.ops.stats import compute_stats

from .conftest import Fleet, build_fleet

INVOICES = {"received": 1, "stamping": 1, "retry_wait": 1, "pending": 1, "stamped": 3,
            "rejected": 1, "failed": 2, "held": 0}
NOTIFICATIONS = {"queued": 1, "sending": 0, "retry_wait": 0, "delivered": 3, "failed": 2,
                 "held": 0}


def test_stats_numbers_at_a_pinned_time(sessions: sessionmaker[Session]) -> None:
    now = utcnow()
    fleet = build_fleet(sessions, now)
    with sessions() as s:
        st = compute_stats(s, window_s=3600, now=now)
    assert st.invoices == INVOICES
    assert st.notifications == NOTIFICATIONS
    ages = {k: (v.id, round(v.age_s)) if v else None for k, v in st.oldest_invoice.items()}
    assert ages == {"received": (fleet.ids["R-received"], 600),
                    "stamping": (fleet.ids["R-stamping"], 60),
                    "retry_wait": (fleet.ids["R-retry"], 120),
                    "pending": (fleet.ids["R-pending"], 1200), "held": None}
    notes = {k: (v.id, round(v.age_s)) if v else None for k, v in st.oldest_notification.items()}
    assert notes == {"queued": (fleet.notes["queued"], 300), "sending": None, "retry_wait": None,
                     "held": None}
    assert st.breakers == []  # nothing held, no breaker open

    # one hour: two 708s on R-retry and R-stamped's stamp; older calls fall outside
    assert (st.finkok_calls, st.finkok_failures) == (3, 2)
    assert st.finkok_by_outcome == {"success": 1, "transient": 2}
    assert st.finkok_top_codes == [("708", 2)]
    assert st.finkok_avg_ms == {"stamp": round((100 + 100 + 300) / 3, 1)}
    assert (st.sif_deliveries, st.sif_by_status) == (2, {"204": 1, "401": 1})
    # stamped 30 s, 3 min, 10 min and 20 min ago
    assert st.stamped_per_min == {"1m": 1.0, "5m": 0.4, "15m": 0.2}

    with sessions() as s:  # a day: the rejection, the ambiguous call, the old deliveries
        day = compute_stats(s, window_s=86400, now=now)
    assert day.finkok_calls == 5 and day.finkok_failures == 4
    assert day.finkok_top_codes == [("708", 2), ("CFDI40143", 1)]
    assert day.finkok_by_outcome == {"ambiguous": 1, "fiscal_data": 1, "success": 1, "transient": 2}
    assert day.sif_by_status == {"204": 3, "401": 1}
    with sessions() as s:  # three days: the timeout without an answer
        assert compute_stats(s, window_s=3 * 86400, now=now).sif_by_status == {
            "204": 3, "401": 1, "no answer": 1}


def test_stats_cli(ops_env: Path, runner: CliRunner, fleet: Fleet) -> None:
    res = runner.invoke(app, ["stats", "--window", "1h", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["invoices"] == INVOICES and data["notifications"] == NOTIFICATIONS
    assert data["window_s"] == 3600
    assert data["finkok_top_codes"] == [{"code": "708", "count": 2}]
    assert data["sif_by_status"] == {"204": 1, "401": 1}
    assert data["stamped_per_min"]["5m"] == 0.4
    oldest = data["oldest_invoice"]["received"]
    assert oldest["id"] == fleet.ids["R-received"] and 600 <= oldest["age_s"] < 660

    res = runner.invoke(app, ["stats", "--window", "15m"])
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "retry_wait" in out and fleet.ids["R-pending"] in out
    assert "708" in out and "401" in out
    assert "stamped per minute: last 1m: 1, last 5m: 0.4, last 15m: 0.2" in out

    res = runner.invoke(app, ["stats", "--window", "soon"])
    assert res.exit_code == 2 and "expected a duration" in res.stderr


def test_stats_on_an_empty_database(ops_env: Path, runner: CliRunner) -> None:
    res = runner.invoke(app, ["stats", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert set(data["invoices"].values()) == {0} and data["finkok_calls"] == 0
    assert data["stamped_per_min"] == {"1m": 0.0, "5m": 0.0, "15m": 0.0}
    assert all(v is None for v in data["oldest_invoice"].values())
    assert timedelta(seconds=data["window_s"]) == timedelta(hours=1)
