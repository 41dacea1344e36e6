"""The exact `billing worker` command logs what its tasks do, in console and JSON modes.

Celery replaces ``sys.stderr`` with a logging proxy in the worker; our handler used to
write into it and the proxy dropped every record, so `billing worker` was silent after
its banner while `celery -A worker.tasks worker` (what the other tests start) was not.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from worker.celery_app import STAMP_TASK, create_app
from worker.cfdi.factory import build_invoice
from worker.db.migrate import upgrade
from worker.db.session import create_db_engine, session_factory
from worker.doorbell import bell_for
from worker.invoices.intake import submit
from worker.sandbox.finkok import FinkokSandbox
from worker.sandbox.sif import SifSandbox
from worker.settings import load_settings

pytestmark = pytest.mark.slow

WRONG_SIF_SECRET = "not-the-sif-secret-7731"


@pytest.fixture()
def sif_refusing() -> Iterator[SifSandbox]:
    """A SIF whose secret is not ours: every notification is a 401."""
    with SifSandbox(secret="the-real-sif-secret") as sandbox:
        yield sandbox


def _billing() -> list[str]:
    script = shutil.which("billing", path=str(Path(sys.executable).parent))
    assert script, "the `billing` console script is not installed beside this python"
    return [script]


def _read_until(log: Path, needles: list[str], proc: subprocess.Popen[bytes],
                timeout_s: float = 60.0) -> str:
    deadline = time.monotonic() + timeout_s
    text = ""
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if all(n in text for n in needles):
            return text
        assert proc.poll() is None, f"billing worker exited ({proc.returncode}):\n{text[-3000:]}"
        time.sleep(0.2)
    return text


@pytest.mark.parametrize("as_json", [False, True], ids=["console", "json"])
def test_billing_worker_logs_task_lines(
    as_json: bool, tmp_path: Path, finkok: FinkokSandbox, sif_refusing: SifSandbox
) -> None:
    db_url = f"sqlite:///{tmp_path / 'billing.db'}"
    upgrade(db_url)
    sessions = session_factory(create_db_engine(db_url))
    producer = create_app(load_settings(data_dir=tmp_path / "var", broker_url="filesystem://"))
    r = submit(sessions, build_invoice(folio="logs"), empresa_ref_id="E1", reference="LOG-1",
               publish=bell_for(producer, STAMP_TASK))

    env = {k: v for k, v in os.environ.items() if not k.startswith("BILLING_")}
    env.update({
        "BILLING_DATA_DIR": str(tmp_path / "var"), "BILLING_DATABASE_URL": db_url,
        "BILLING_BROKER_URL": "filesystem://", "BILLING_FINKOK_ENVIRONMENT": finkok.url,
        "BILLING_SIF_BASE_URL": sif_refusing.url, "BILLING_SIF_SECRET": WRONG_SIF_SECRET,
        "BILLING_LOG_JSON": "true" if as_json else "false", "BILLING_LOG_LEVEL": "INFO",
    })
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([*_billing(), "worker", "-c", "1"], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        text = _read_until(log, [f"invoice {r.invoice_id} -> stamped", "SIF REFUSED OUR SECRET"],
                           proc)
    finally:  # (the lines are in; a warm shutdown of the pools would only add 30 s)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    assert f"invoice {r.invoice_id} -> stamped" in text, text[-3000:]
    assert "SIF REFUSED OUR SECRET" in text, text[-3000:]
    assert WRONG_SIF_SECRET not in text
    lines = text.splitlines()
    stamped = next(ln for ln in lines if f"invoice {r.invoice_id} -> stamped" in ln)
    refused = next(ln for ln in lines if "SIF REFUSED OUR SECRET" in ln)
    if as_json:
        stamped_rec, refused_rec = json.loads(stamped), json.loads(refused)
        assert stamped_rec["level"] == "info"
        assert stamped_rec["task_name"] == "billing.stamp_invoice"
        assert stamped_rec["invoice_id"] == r.invoice_id
        assert stamped_rec["reference"] == "LOG-1"
        assert refused_rec["level"] == "error" and refused_rec["task_name"] == "billing.notify_sif"
    else:
        assert "[info" in stamped and "reference=LOG-1" in stamped, stamped
        assert "[error" in refused, refused
