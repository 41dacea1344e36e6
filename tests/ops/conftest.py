"""Fixtures for the operations commands: the CLI against the real test database (SQLite
and PostgreSQL), a fleet of invoices in every state with known times, and the Finkok and
SIF sandboxes for the end-to-end repairs."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from worker.db.models import (
    Base,
    DeliveryAttempt,
    Invoice,
    Notification,
    StampAttempt,
    utcnow,
)
from worker.sandbox.finkok import FinkokSandbox
from worker.sandbox.sif import SifSandbox
from worker.settings import Settings, get_settings, load_settings

EMISOR = "AAA010101AAA"
OTHER_EMISOR = "EKU9003173C9"
FOREIGN = "XEXX010101000"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The commands configure logging for their process; put the root logger back."""
    import logging

    import structlog

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


@pytest.fixture()
def ops_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str,
            sessions: sessionmaker[Session]) -> Iterator[Path]:
    """A clean BILLING_* environment on the test database; the broker folder in tmp."""
    for key in list(os.environ):
        if key.startswith("BILLING_") and not key.startswith("BILLING_TEST_") \
                and key != "BILLING_SHARED_DIR":
            monkeypatch.delenv(key)
    monkeypatch.setenv("BILLING_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("BILLING_DATABASE_URL", db_url)
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


@pytest.fixture()
def runner() -> CliRunner:
    """Wide enough that rich never wraps a message the tests look for."""
    return CliRunner(env={"COLUMNS": "400"})


def queued_messages(data_dir: Path) -> list[tuple[str, list[Any]]]:
    """The messages waiting in the filesystem broker: (task name, args) of each."""
    import base64

    out = []
    for path in sorted((data_dir / "var" / "broker" / "queue").glob("*.msg")):
        message = json.loads(path.read_text())
        args = json.loads(base64.b64decode(message["body"]))[0]
        out.append((message["headers"]["task"], args))
    return out


def snapshot(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, every column: to prove a dry run changed nothing."""
    out: dict[str, list[dict[str, Any]]] = {}
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            pk = list(table.primary_key.columns)
            rows = conn.execute(select(table).order_by(*pk)).mappings().all()
            out[table.name] = [dict(r) for r in rows]
    return out


# --- a fleet of invoices with known times ------------------------------------------------------


@functools.cache
def stamped_cfdi(sat_uuid: str) -> bytes:
    """A sealed CFDI stamped by the sandbox PAC (real TFD, real seals); cached: sealing
    costs tens of milliseconds and every fleet uses the same UUIDs."""
    from worker.cfdi.csd import sandbox_pac_csd
    from worker.cfdi.factory import build_invoice
    from worker.cfdi.tfd import add_tfd

    sealed = build_invoice(receptor_rfc="URE180429TM6", receptor_cp="06000",
                           receptor_regimen="601", uso_cfdi="G03")
    return add_tfd(sealed, uuid=sat_uuid, fecha_timbrado=utcnow().strftime("%Y-%m-%dT%H:%M:%S"),
                   pac=sandbox_pac_csd())


# The SAT UUIDs of the fleet's stamped invoices (tables are emptied after each test).
FLEET_UUIDS = {ref: str(uuid.uuid4()).upper()
               for ref in ("R-stamped", "R-stamped2", "R-stamped3", "R-pending")}


@dataclass
class Fleet:
    now: datetime
    ids: dict[str, str] = field(default_factory=dict)  # reference -> invoice id
    notes: dict[str, str] = field(default_factory=dict)  # label -> notification id
    uuids: dict[str, str] = field(default_factory=dict)  # reference -> SAT UUID
    stamped_xml: dict[str, bytes] = field(default_factory=dict)


def _invoice(now: datetime, reference: str, state: str, changed_ago: timedelta,
             **values: Any) -> Invoice:
    xml = values.pop("xml", f"<cfdi:Comprobante Folio='{reference}'/>".encode())
    created = now - changed_ago - timedelta(minutes=5)
    base: dict[str, Any] = {
        "id": str(uuid.uuid4()), "empresa_ref_id": "E1", "reference": reference,
        "pedidoga": f"P-{reference}", "xml": xml, "xml_sha256": hashlib.sha256(xml).hexdigest(),
        "emisor_rfc": EMISOR, "receptor_rfc": "URE180429TM6", "total": "116.00",
        "state": state, "state_changed_at": now - changed_ago, "created_at": created,
        "updated_at": now - changed_ago, "next_attempt_at": None,
    }
    base.update(values)
    return Invoice(**base)


def _attempt(invoice: Invoice, ago: timedelta, now: datetime, outcome: str,
             codes: list[str] | None, operation: str = "stamp", ms: int = 100) -> StampAttempt:
    return StampAttempt(invoice_id=invoice.id, operation=operation, started_at=now - ago,
                        duration_ms=ms, outcome=outcome, codes=codes, worker="w1")


def _note(invoice: Invoice, now: datetime, status: str, state: str, ago: timedelta,
          **values: Any) -> Notification:
    return Notification(id=str(uuid.uuid4()), invoice_id=invoice.id, status=status, state=state,
                        created_at=now - ago, state_changed_at=now - ago,
                        next_attempt_at=values.pop("next_attempt_at", None), **values)


def build_fleet(sessions: sessionmaker[Session], now: datetime | None = None) -> Fleet:
    """Ten invoices covering every state, with attempts, notifications and deliveries.

    Known numbers for a one-hour window at ``now``: Finkok calls 3 (2 failed, code 708
    twice), SIF deliveries {204: 1, 401: 1}, stamped at -30 s, -3 min, -10 min, -20 min.
    """
    now = now or utcnow()
    f = Fleet(now)
    m, h, d, s = (lambda n: timedelta(minutes=n)), (lambda n: timedelta(hours=n)), \
        (lambda n: timedelta(days=n)), (lambda n: timedelta(seconds=n))
    e708 = [{"code": "708", "message": "No se pudo conectar al SAT", "kind": "transient"}]
    f.uuids = dict(FLEET_UUIDS)
    f.stamped_xml["R-stamped"] = stamped_cfdi(f.uuids["R-stamped"])
    with sessions.begin() as db:
        rows = {
            "R-received": _invoice(now, "R-received", "received", m(10), next_attempt_at=now - m(10)),
            "R-stamping": _invoice(now, "R-stamping", "stamping", m(1), attempts=1,
                                   lease_owner="host:1:abcd", lease_expires_at=now + m(4),
                                   must_check_stamped=True),
            "R-retry": _invoice(now, "R-retry", "retry_wait", m(2), attempts=2, errors=e708,
                                next_attempt_at=now + s(30)),
            "R-pending": _invoice(now, "R-pending", "pending", m(20), attempts=1,
                                  sat_uuid=f.uuids["R-pending"], stamped_at=now - m(20),
                                  sat_status="S", next_attempt_at=now + s(30)),
            "R-stamped": _invoice(now, "R-stamped", "stamped", s(30), attempts=1,
                                  sat_uuid=f.uuids["R-stamped"], stamped_at=now - s(30),
                                  stamped_xml=f.stamped_xml["R-stamped"],
                                  fecha_timbrado="2026-11-21T10:00:00"),
            "R-stamped2": _invoice(now, "R-stamped2", "stamped", m(3), empresa_ref_id="E2",
                                   emisor_rfc=OTHER_EMISOR, attempts=1,
                                   sat_uuid=f.uuids["R-stamped2"], stamped_at=now - m(3),
                                   stamped_xml=stamped_cfdi(f.uuids["R-stamped2"])),
            "R-stamped3": _invoice(now, "R-stamped3", "stamped", m(12), attempts=1,
                                   sat_uuid=f.uuids["R-stamped3"], stamped_at=now - m(10)),
            "R-rejected": _invoice(now, "R-rejected", "rejected", m(90), attempts=1,
                                   receptor_rfc=FOREIGN, error_kind="fiscal_data",
                                   errors=[{"code": "CFDI40143", "message": "Nombre no coincide",
                                            "kind": "fiscal_data"}]),
            "R-failed": _invoice(now, "R-failed", "failed", d(3), attempts=8, errors=e708,
                                 error_kind="exhausted"),
            "R-unknown": _invoice(now, "R-unknown", "failed", h(5), attempts=8,
                                  error_kind="unknown", must_check_stamped=True,
                                  errors=[{"code": "ambiguous", "message": "read timeout",
                                           "kind": "transient"}]),
        }
        db.add_all(rows.values())
        db.flush()
        db.add_all([
            _attempt(rows["R-retry"], m(3), now, "transient", ["708"]),
            _attempt(rows["R-retry"], m(2), now, "transient", ["708"]),
            _attempt(rows["R-stamped"], s(40), now, "success", None, ms=300),
            _attempt(rows["R-rejected"], m(90), now, "fiscal_data", ["CFDI40143"]),
            _attempt(rows["R-unknown"], h(5), now, "ambiguous", None),
        ])
        notes = {
            "old-nok": _note(rows["R-stamped"], now, "NOK", "delivered", h(2), result="delivered",
                             last_status_code=204, delivered_at=now - h(2)),
            "ok": _note(rows["R-stamped"], now, "OK", "delivered", s(20), result="delivered",
                        last_status_code=204, delivered_at=now - s(20)),
            "unauthorized": _note(rows["R-stamped2"], now, "OK", "failed", m(2),
                                  result="unauthorized", last_status_code=401, attempts=1),
            "queued": _note(rows["R-stamped3"], now, "OK", "queued", m(5), next_attempt_at=now - m(5)),
            "nok-rejected": _note(rows["R-rejected"], now, "NOK", "delivered", m(80),
                                  result="delivered", last_status_code=204),
            "nok-failed": _note(rows["R-failed"], now, "NOK", "failed", d(2), result="exhausted",
                                last_status_code=503, attempts=10),
        }
        db.add_all(notes.values())
        db.flush()
        db.add_all([
            DeliveryAttempt(notification_id=notes["old-nok"].id, started_at=now - h(2),
                            duration_ms=50, status_code=204, worker="w1"),
            DeliveryAttempt(notification_id=notes["ok"].id, started_at=now - s(20),
                            duration_ms=80, status_code=204, worker="w1"),
            DeliveryAttempt(notification_id=notes["unauthorized"].id, started_at=now - m(2),
                            duration_ms=30, status_code=401, worker="w1",
                            response_body='{"message": "bad credentials"}'),
            DeliveryAttempt(notification_id=notes["nok-rejected"].id, started_at=now - m(80),
                            duration_ms=40, status_code=204, worker="w1"),
            DeliveryAttempt(notification_id=notes["nok-failed"].id, started_at=now - d(2),
                            duration_ms=5000, status_code=None, worker="w1",
                            error="timeout: read timed out"),
        ])
        f.ids = {ref: row.id for ref, row in rows.items()}
        f.notes = {label: n.id for label, n in notes.items()}
    return f


@pytest.fixture()
def fleet(sessions: sessionmaker[Session]) -> Fleet:
    return build_fleet(sessions)


# --- sandboxes ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def finkok_server() -> Iterator[FinkokSandbox]:
    with FinkokSandbox() as sandbox:
        yield sandbox


@pytest.fixture()
def finkok(finkok_server: FinkokSandbox) -> Iterator[FinkokSandbox]:
    from tests.pipeline.conftest import restore_defaults

    restore_defaults(finkok_server)
    yield finkok_server
    restore_defaults(finkok_server)


@pytest.fixture(scope="session")
def sif_server() -> Iterator[SifSandbox]:
    with SifSandbox() as sandbox:
        yield sandbox


@pytest.fixture()
def sif(sif_server: SifSandbox) -> SifSandbox:
    sif_server.reset()
    return sif_server


@pytest.fixture()
def pipeline_settings(db_url: str, finkok: FinkokSandbox, sif: SifSandbox, tmp_path: Path) -> Settings:
    """Settings for running the stamping and notify functions against the sandboxes."""
    return load_settings(
        data_dir=tmp_path / "var", database_url=db_url, finkok_environment=finkok.url,
        finkok_read_timeout_s=2.0, sif_base_url=sif.url, stamp_max_attempts=1,
        stamped_lookup_max_attempts=2, stamp_backoff_base_s=0.01, stamp_backoff_max_s=0.02,
        pending_poll_interval_s=0.01,
    )


Stamp = Callable[[str], Any]


@contextmanager
def billing_worker_and_beat(env: dict[str, str], folder: Path, node: str) -> Iterator[None]:
    """The real `billing worker` (its pools) and `billing beat` as processes, with only
    ``env``'s BILLING_* settings; their output in ``folder``/worker.log and beat.log.
    Stopped with SIGTERM (then SIGKILL after 30 s) when the block ends."""
    script = shutil.which("billing", path=str(Path(sys.executable).parent)) or "billing"
    child_env = {k: v for k, v in os.environ.items()
                 if not k.startswith("BILLING_") or k.startswith("BILLING_TEST_")} | env
    procs = []
    try:
        for argv, name in (([script, "worker", "-c", "1", "-n", f"{node}@%h"], "worker"),
                           ([script, "beat"], "beat")):
            log = (folder / f"{name}.log").open("w")
            procs.append(subprocess.Popen(argv, env=child_env, cwd=folder, stdout=log,
                                          stderr=subprocess.STDOUT))
        yield
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
