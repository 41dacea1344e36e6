"""billing.reconcile is registered like the other periodic tasks (its stable name, the
maintenance queue, a beat entry every reconcile_interval_s), and a real `billing beat` and
`billing worker` run it on that schedule against the Finkok sandbox: each run stores its
findings (an orphan stamp) and the reconcile heartbeat, and never adopts."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.ops.conftest import EMISOR, billing_worker_and_beat
from worker.celery_app import MAINTENANCE_QUEUE, RECONCILE_TASK
from worker.cfdi.factory import build_invoice
from worker.db.models import ReconcileRun
from worker.finkok.client import FinkokClient
from worker.ops.heartbeats import last_beats
from worker.sandbox.finkok import FinkokSandbox
from worker.settings import get_settings, load_settings
from worker.tasks import create_worker_app


def test_registered_routed_and_scheduled(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, reconcile_interval_s=321.0)
    app = create_worker_app(settings)
    assert RECONCILE_TASK == "billing.reconcile" and RECONCILE_TASK in app.tasks
    assert app.conf.task_routes[RECONCILE_TASK] == {"queue": MAINTENANCE_QUEUE}
    entry = app.conf.beat_schedule["reconcile"]
    assert entry["task"] == RECONCILE_TASK and entry["schedule"] == 321.0
    assert entry["options"]["queue"] == MAINTENANCE_QUEUE
    # each run looks further back than the interval: consecutive windows overlap
    defaults = load_settings(data_dir=tmp_path)
    assert defaults.reconcile_interval_s == 86400 and defaults.reconcile_window_s > 86400


@pytest.fixture()
def beat_env(ops_env: Path, redis_url: str, db_url: str, finkok: FinkokSandbox,
             monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {
        "BILLING_DATA_DIR": str(ops_env / "var"), "BILLING_DATABASE_URL": db_url,
        "BILLING_BROKER_URL": redis_url,
        "BILLING_BROKER_KEY_PREFIX": f"rc{os.getpid()}-{ops_env.name}:",
        "BILLING_FINKOK_ENVIRONMENT": finkok.url, "BILLING_RECONCILE_INTERVAL_S": "1",
        "BILLING_RECONCILE_RFCS": EMISOR,
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    return values


@pytest.fixture()
def worker_and_beat(beat_env: dict[str, str], ops_env: Path) -> Iterator[None]:
    with billing_worker_and_beat(beat_env, ops_env, f"rc-{os.getpid()}"):
        yield



@pytest.mark.slow
def test_the_beat_runs_reconcile_on_its_schedule(
    beat_env: dict[str, str], finkok: FinkokSandbox, sessions: sessionmaker[Session],
    ops_env: Path, request: pytest.FixtureRequest,
) -> None:
    with FinkokClient.from_settings(get_settings()) as client:  # a stamp that is not ours
        orphan = client.stamp(build_invoice(folio="beat-orphan")).uuid
    request.getfixturevalue("worker_and_beat")
    started = time.monotonic()
    runs: list[ReconcileRun] = []
    while time.monotonic() - started < 90:
        with sessions() as db:
            runs = list(db.scalars(select(ReconcileRun).order_by(ReconcileRun.id)))
        if len(runs) >= 3:
            break
        time.sleep(0.5)
    logs = "\n".join(p.read_text()[-3000:] for p in ops_env.glob("*.log"))
    assert len(runs) >= 3, logs
    first, second, third = runs[:3]
    assert {r.trigger for r in runs} == {"beat"} and len({r.run_id for r in runs}) == len(runs)
    assert (first.emisor_rfc, first.finkok_uuids, first.orphans, first.matched, first.adopted) == (
        EMISOR, 1, 1, 0, 0)
    assert first.details and first.details["orphans"][0]["uuid"] == orphan
    # every reconcile_interval_s (1 s): the first run may wait for the worker to start, so
    # measure over two intervals
    gap = (third.started_at - first.started_at).total_seconds()
    assert 0 < gap < 20, gap  # on schedule, not stuck (no timing assertion beyond that)
    assert second.window_from < first.window_to  # the windows overlap
    with sessions() as db:
        assert last_beats(db)["reconcile"].interval_s == 1.0
    print(f"three scheduled runs {time.monotonic() - started:.1f} s after starting; "
          f"two intervals took {gap:.2f} s")
