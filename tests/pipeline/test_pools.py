"""`billing worker` runs stamping, SIF delivery and maintenance in separate pools: a Finkok
that hangs holds the stamp pool only, and SIF still hears outcomes meanwhile."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import update

from worker.celery_app import NOTIFY_TASK, STAMP_TASK, create_app
from worker.cfdi.factory import build_invoice
from worker.db.lifecycle import outbox
from worker.db.migrate import upgrade
from worker.db.models import Invoice
from worker.db.session import create_db_engine, session_factory
from worker.doorbell import bell_for
from worker.invoices.intake import submit
from worker.sandbox.finkok import FinkokSandbox
from worker.sandbox.sif import SifSandbox
from worker.settings import load_settings

pytestmark = pytest.mark.slow


def test_a_hanging_finkok_does_not_hold_sif_deliveries(
    tmp_path: Path, finkok: FinkokSandbox
) -> None:
    db_url = f"sqlite:///{tmp_path / 'billing.db'}"
    upgrade(db_url)
    sessions = session_factory(create_db_engine(db_url))
    producer = create_app(load_settings(data_dir=tmp_path / "var", broker_url="filesystem://"))
    finkok.configure(hang_rate=1.0, hang_s=40.0, fault_ops=["stamp"])  # every stamp hangs
    with SifSandbox() as sif:
        slow = submit(sessions, build_invoice(folio="slow"), empresa_ref_id="E1",
                      reference="SLOW-1", publish=bell_for(producer, STAMP_TASK))
        # Another invoice already settled earlier: its NOK waits in the outbox.
        done = submit(sessions, build_invoice(folio="done"), empresa_ref_id="E1",
                      reference="DONE-1")
        with sessions.begin() as s:
            s.execute(update(Invoice).where(Invoice.id == done.invoice_id).values(
                state="rejected", errors=[{"code": "CFDI40143", "message": "RFC", "kind": "fiscal_data"}]))
            nid = outbox(s, done.invoice_id, "NOK")

        env = {k: v for k, v in os.environ.items() if not k.startswith("BILLING_")}
        env.update({"BILLING_DATA_DIR": str(tmp_path / "var"), "BILLING_DATABASE_URL": db_url,
                    "BILLING_BROKER_URL": "filesystem://", "BILLING_FINKOK_ENVIRONMENT": finkok.url,
                    "BILLING_FINKOK_READ_TIMEOUT_S": "60", "BILLING_SIF_BASE_URL": sif.url})
        script = shutil.which("billing", path=str(Path(sys.executable).parent))
        assert script
        log = tmp_path / "worker.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([script, "worker", "-c", "1"], env=env, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and finkok.stats()["calls"].get("stamp.stamp", 0) < 1:
                time.sleep(0.2)
            assert finkok.stats()["calls"].get("stamp.stamp", 0) == 1, log.read_text()[-3000:]
            bell_for(producer, NOTIFY_TASK)(nid)  # while the stamp pool's only process hangs
            while time.monotonic() < deadline and not sif.statuses("E1", "DONE-1"):
                time.sleep(0.2)
            assert sif.statuses("E1", "DONE-1") == ["NOK"], log.read_text()[-3000:]
            with sessions() as s:  # the stamp is still hanging: SIF did not wait for it
                assert s.get(Invoice, slow.invoice_id).state == "stamping"  # type: ignore[union-attr]
        finally:  # (a warm shutdown would wait for the hanging stamp: not what is tested)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        text = log.read_text()
        for node in ("stamp@", "notify@", "maintenance@"):  # three pools, each ready
            assert f"{node}" in text and "ready" in text, text[-3000:]


def test_a_slow_sif_does_not_hold_stamping_when_the_stamp_process_delivers_first(
    tmp_path: Path, finkok: FinkokSandbox
) -> None:
    """The stamping process makes SIF's first attempt in its own thread
    (worker/invoices/first_delivery.py). With SIF holding every PUT for two minutes and one
    stamp process, all four invoices are stamped anyway, however slow this machine is: the
    thread holds one delivery and one waits in its slot, the others went to the notify
    pool (one process, holding one). Had the stamp task waited for its PUT, the second
    invoice would not be stamped before the deadline (a coupled control fails here)."""
    from worker.db.models import Notification

    db_url = f"sqlite:///{tmp_path / 'billing.db'}"
    upgrade(db_url)
    sessions = session_factory(create_db_engine(db_url))
    producer = create_app(load_settings(data_dir=tmp_path / "var", broker_url="filesystem://"))
    with SifSandbox() as sif:
        sif.configure(latency_s=120.0)
        env = {k: v for k, v in os.environ.items() if not k.startswith("BILLING_")}
        env.update({"BILLING_DATA_DIR": str(tmp_path / "var"), "BILLING_DATABASE_URL": db_url,
                    "BILLING_BROKER_URL": "filesystem://", "BILLING_FINKOK_ENVIRONMENT": finkok.url,
                    "BILLING_SIF_BASE_URL": sif.url})
        script = shutil.which("billing", path=str(Path(sys.executable).parent))
        assert script
        log = tmp_path / "worker.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([script, "worker", "-c", "1", "--notify-c", "1"], env=env, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        try:
            refs = [f"SLOWSIF-{i}" for i in range(4)]
            for ref in refs:
                submit(sessions, build_invoice(folio=ref), empresa_ref_id="E1", reference=ref,
                       publish=bell_for(producer, STAMP_TASK))
            deadline = time.monotonic() + 90
            stamped = 0
            while time.monotonic() < deadline and stamped < len(refs):
                with sessions() as s:
                    stamped = s.query(Invoice).filter(Invoice.state == "stamped").count()
                time.sleep(0.2)
            assert stamped == len(refs), log.read_text()[-3000:]
            heard = sum(len(sif.statuses("E1", ref)) for ref in refs)
            assert heard <= 2, f"SIF heard {heard} of {len(refs)}"
            owners: list[str | None] = []
            while time.monotonic() < deadline and not any(":first-" in (o or "") for o in owners):
                with sessions() as s:  # the thread's PUT is in flight: its row is leased
                    owners = [o for (o,) in s.query(Notification.lease_owner)]
                time.sleep(0.2)
            assert any(":first-" in (o or "") for o in owners), owners
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
