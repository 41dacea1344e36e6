"""The pipeline with a real Celery worker, real brokers and the sandboxes over HTTP.

Three stacks: the embedded default (SQLite + filesystem broker), the production shape
(PostgreSQL + Redis; fakeredis over TCP where no Redis answers, never in CI), and
PostgreSQL + RabbitMQ (quorum queues, in a vhost of the test's own; skipped with the
reason where no RabbitMQ answers, never in CI).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tests.pipeline.conftest import prompt_hub
from worker.celery_app import STAMP_TASK
from worker.cfdi.factory import build_invoice
from worker.db.migrate import upgrade
from worker.db.models import Invoice, Notification
from worker.db.session import create_db_engine, session_factory
from worker.doorbell import bell_for
from worker.invoices.intake import submit
from worker.sandbox.finkok import FinkokSandbox
from worker.sandbox.sif import SifSandbox
from worker.settings import Settings, load_settings
from worker.tasks import create_worker_app

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sif_sandbox() -> Iterator[SifSandbox]:
    with SifSandbox() as sandbox:
        yield sandbox


@pytest.fixture(params=["embedded", "servers", "rabbitmq"])
def stack(request: pytest.FixtureRequest, tmp_path: Path, finkok: FinkokSandbox,
          sif_sandbox: SifSandbox) -> Settings:
    sif_sandbox.reset()
    if request.param == "embedded":
        db_url, broker = f"sqlite:///{tmp_path / 'billing.db'}", "filesystem://"
    elif request.param == "rabbitmq":
        broker = request.getfixturevalue("rabbitmq_url")  # a fresh vhost: no stray messages
        db_url = request.getfixturevalue("_pg_url")
    else:
        db_url = request.getfixturevalue("_pg_url")
        broker = request.getfixturevalue("redis_url")
        import redis

        redis.Redis.from_url(broker).flushdb()
    upgrade(db_url)
    if request.param in ("servers", "rabbitmq"):  # a fresh schema per test: empty the tables
        from worker.db.models import Base

        engine = create_db_engine(db_url)
        with engine.begin() as conn:
            for table in reversed(Base.metadata.sorted_tables):
                conn.execute(table.delete())
        engine.dispose()
    return load_settings(
        data_dir=tmp_path / "var", database_url=db_url, broker_url=broker,
        # a key prefix of its own: no stray worker from another run can take our messages
        broker_key_prefix=f"t{os.getpid()}-{tmp_path.name}:",
        finkok_environment=finkok.url, finkok_read_timeout_s=2.0,
        sif_base_url=sif_sandbox.url, stamp_backoff_base_s=0.05, stamp_backoff_max_s=0.2,
        pending_poll_interval_s=0.2, claim_lease_s=3, notify_backoff_base_s=0.05,
    )


@pytest.fixture(scope="module")
def _pg_url() -> Iterator[str]:
    from tests.conftest import _postgres_database

    gen = _postgres_database()
    yield next(gen)
    gen.close()


def _embedded_worker(app: Celery, *, shutdown_timeout: float) -> AbstractContextManager[Any]:
    """The real worker, in-process with the solo pool (its tasks run as a prefork child's
    would: worker_process_init fires, so the first SIF delivery runs from the stamping
    process), consuming what the pipeline consumes."""
    prompt_hub(app)
    return start_worker(app, pool="solo", perform_ping_check=False,
                        queues=["stamp", "notify", "maintenance"], shutdown_timeout=shutdown_timeout)


def _wait(predicate: Callable[[], bool], timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def _counts(settings: Settings) -> tuple[dict[str, int], dict[str, int]]:
    engine = create_db_engine(settings.database_url)
    try:
        with Session(engine) as s:
            inv = dict(s.execute(select(Invoice.state, func.count()).group_by(Invoice.state)).all())
            notif = dict(s.execute(select(Notification.state, func.count())
                                   .group_by(Notification.state)).all())
        return inv, notif  # type: ignore[return-value]
    finally:
        engine.dispose()


def test_worker_stamps_and_reports_each_invoice_once(
    stack: Settings, finkok: FinkokSandbox, sif_sandbox: SifSandbox
) -> None:
    finkok.configure(rules={"XEXX010101000": "reject:CFDI40143"})
    app = create_worker_app(stack)
    sessions = session_factory(create_db_engine(stack.database_url))
    xmls = [build_invoice(folio=str(i)) for i in range(4)]
    xmls.append(build_invoice(folio="r", receptor_rfc="XEXX010101000"))
    with _embedded_worker(app, shutdown_timeout=20):
        ids = []
        for i, xml in enumerate(xmls):
            r = submit(sessions, xml, empresa_ref_id="E1", reference=f"R{i}",
                       publish=bell_for(app, STAMP_TASK))
            ids.append(r.invoice_id)
            for _ in range(4):  # duplicate doorbells are harmless
                bell_for(app, STAMP_TASK)(r.invoice_id)
        assert _wait(lambda: _counts(stack) == ({"stamped": 4, "rejected": 1}, {"delivered": 5})), (
            _counts(stack), finkok.stats()["calls"])
    assert finkok.stats()["totals"]["new_stamps"] == 4
    assert finkok.stats()["calls"]["stamp.stamp"] == 5
    received = sif_sandbox.received()
    assert sorted(r["body"]["status"] for r in received) == ["NOK", "OK", "OK", "OK", "OK"]
    nok = next(r["body"] for r in received if r["body"]["status"] == "NOK")
    assert nok["errorDatosFiscales"] == 1 and nok["error"][0].startswith("CFDI40143 – ")


def test_sweeper_rings_invoices_whose_message_was_lost(stack: Settings, finkok: FinkokSandbox) -> None:
    from worker.celery_app import SWEEP_TASK

    app = create_worker_app(stack)
    sessions = session_factory(create_db_engine(stack.database_url))
    r = submit(sessions, build_invoice(folio="lost"), empresa_ref_id="E1", reference="lost")
    with sessions.begin() as s:  # intake's doorbell was lost two minutes ago
        row = s.get(Invoice, r.invoice_id)
        assert row is not None and row.rung_at is not None
        row.next_attempt_at -= timedelta(minutes=2)  # type: ignore[operator]
        row.rung_at -= timedelta(minutes=2)
    with _embedded_worker(app, shutdown_timeout=30):
        app.send_task(SWEEP_TASK)
        assert _wait(lambda: _counts(stack)[0] == {"stamped": 1})


def _spawn_worker(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BILLING_")}
    env.update({
        "BILLING_DATA_DIR": str(settings.data_dir), "BILLING_DATABASE_URL": settings.database_url,
        "BILLING_BROKER_URL": settings.broker_url,
        "BILLING_BROKER_KEY_PREFIX": settings.broker_key_prefix,
        "BILLING_FINKOK_ENVIRONMENT": settings.finkok_base_url,
        "BILLING_FINKOK_READ_TIMEOUT_S": "10", "BILLING_CLAIM_LEASE_S": "3",
        "BILLING_PENDING_POLL_INTERVAL_S": "0.5",
        # The dead worker's doorbell was rung at intake: re-ring it after 2 s, not 60 s.
        "BILLING_SWEEP_RERING_AFTER_S": "2",
        "BILLING_SIF_BASE_URL": settings.sif_base_url,
    })
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "worker.tasks", "worker", "-P", "prefork",
         "-c", "2", "-Q", "stamp,notify,maintenance", "--loglevel", "INFO", "-n", f"w{time.time_ns()}@%h"],
        env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
    )


def test_sigkill_mid_stamp_still_ends_stamped_with_one_stamp(
    stack: Settings, finkok: FinkokSandbox, tmp_path: Path
) -> None:
    """The worker process group dies while its stamp call is in flight; Finkok stamps the
    document and drops the connection. After the lease expires, a new worker asks
    `stamped` and takes the stamp: one stamp at Finkok, invoice stamped, OK delivered."""
    from worker.celery_app import POLL_PENDING_TASK, SWEEP_TASK, create_app

    finkok.configure(latency_ms=1500, rules={"URE180429TM6": "drop_once"})
    sessions = session_factory(create_db_engine(stack.database_url))
    producer = create_app(stack)
    xml = build_invoice(folio="kill")
    r = submit(sessions, xml, empresa_ref_id="E1", reference="kill",
               publish=bell_for(producer, STAMP_TASK))
    log = tmp_path / "worker.log"
    first = _spawn_worker(stack, log)
    try:
        assert _wait(lambda: finkok.stats()["calls"].get("stamp.stamp", 0) >= 1, 120), log.read_text()
        os.killpg(first.pid, signal.SIGKILL)  # main process and its pool children
        first.wait(10)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert _wait(lambda: (finkok.document_stats(xml) or {}).get("new_stamps") == 1, 10)
    with sessions() as s:
        assert s.get(Invoice, r.invoice_id).state == "stamping"  # type: ignore[union-attr]

    finkok.configure(latency_ms=0)
    second = _spawn_worker(stack, log)
    try:
        # What beat does every few seconds, from the start: the sweeper takes the row over
        # only once the dead worker's lease (3 s) has expired, whenever it is asked.
        deadline, next_ring = time.monotonic() + 60, 0.0
        while time.monotonic() < deadline and _counts(stack)[0] != {"stamped": 1}:
            if time.monotonic() >= next_ring:
                producer.send_task(SWEEP_TASK)
                producer.send_task(POLL_PENDING_TASK)
                next_ring = time.monotonic() + 0.5
            time.sleep(0.2)
    finally:
        os.killpg(second.pid, signal.SIGKILL)  # the outcome is in the database already
        second.wait(10)
    assert _counts(stack)[0] == {"stamped": 1}, log.read_text()[-3000:]
    doc = finkok.document_stats(xml)
    assert doc is not None and doc["new_stamps"] == 1 and doc["stamp_calls"] == 1
    with sessions() as s:
        inv = s.get(Invoice, r.invoice_id)
        assert inv is not None and inv.sat_uuid == doc["uuids"][0]
        # recovered through `stamped`, then confirmed delivered to SAT by query_pending
        assert [a.operation for a in inv.stamp_attempts][:1] == ["stamped"]
        assert inv.stamp_attempts[-1].operation == "query_pending" and inv.sat_status == "F"
