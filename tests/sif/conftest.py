"""Fixtures for the SIF tests: a real SIF sandbox on 127.0.0.1, settings pointing at it,
and helpers that write settled invoices with their outbox rows into the test database
(the shared ``engine``/``sessions`` fixtures: an SQLite file, and PostgreSQL)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from worker.db.models import Invoice, Notification
from worker.db.states import InvoiceState
from worker.sandbox.sif import SifSandbox
from worker.settings import Settings, load_settings
from worker.sif.client import SifClient

SECRET = "tEsT-s1f-secret-7f3a9c"
EMPRESA = "00000000-0000-1000-0000-000000000001"
T0 = datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC)

@pytest.fixture()
def sif() -> Iterator[SifSandbox]:
    with SifSandbox(secret=SECRET) as sandbox:
        yield sandbox


def make_settings(base_url: str, **overrides: Any) -> Settings:
    """Tiny backoffs and timeouts, so no test waits on them."""
    values: dict[str, Any] = {
        "sif_base_url": base_url,
        "sif_secret": SECRET,
        "sif_generator_id": "SIF_TEST",
        "sif_connect_timeout_s": 1.0,
        "sif_read_timeout_s": 2.0,
        "notify_max_attempts": 3,
        "notify_retry_budget_s": 0.0,  # exhaustion by count alone (the budget has its own test)
        "notify_backoff_base_s": 1.0,
        "notify_backoff_max_s": 4.0,
        "notify_404_window_s": 60.0,
        "claim_lease_s": 30,
    }
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture()
def settings(sif: SifSandbox) -> Settings:
    return make_settings(sif.url)


@pytest.fixture()
def client(settings: Settings) -> Iterator[SifClient]:
    with SifClient(settings) as c:
        yield c


def _invoice(**values: Any) -> Invoice:
    xml = values.pop("xml", b"<cfdi:Comprobante/>")
    base: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "empresa_ref_id": EMPRESA,
        "reference": f"REF{uuid.uuid4().hex[:10]}",
        "pedidoga": "23117640210000056300",
        "xml": xml,
        "xml_sha256": hashlib.sha256(xml).hexdigest(),
        "emisor_rfc": "EKU9003173C9",
        "receptor_rfc": "URE180429TM6",
        "total": "116.00",
    }
    base.update(values)
    return Invoice(**base)


MakeRows = Callable[..., tuple[str, str]]


@pytest.fixture()
def add_nok(sessions: sessionmaker[Session]) -> MakeRows:
    """A rejected invoice and its queued NOK notification; returns (invoice_id, notification_id)."""

    def make(errors: list[dict[str, str]] | None = None, **invoice: Any) -> tuple[str, str]:
        errors = errors if errors is not None else [
            {"code": "CFDI40145", "message": "El campo Nombre del receptor no coincide",
             "kind": "fiscal_data"}
        ]
        with sessions.begin() as s:
            row = _invoice(**{"state": InvoiceState.REJECTED, "errors": errors, **invoice})
            s.add(row)
            note = Notification(invoice_id=row.id, status="NOK", next_attempt_at=T0)
            s.add(note)
            s.flush()
            return row.id, note.id

    return make


@pytest.fixture()
def add_ok(sessions: sessionmaker[Session]) -> Callable[[bytes, str], tuple[str, str]]:
    """A stamped invoice (given its stamped XML and SAT UUID) and its queued OK notification."""

    def make(stamped_xml: bytes, sat_uuid: str, **invoice: Any) -> tuple[str, str]:
        with sessions.begin() as s:
            row = _invoice(**{
                "state": InvoiceState.STAMPED, "stamped_xml": stamped_xml, "sat_uuid": sat_uuid,
                "stamped_at": T0, **invoice,
            })
            s.add(row)
            note = Notification(invoice_id=row.id, status="OK", next_attempt_at=T0)
            s.add(note)
            s.flush()
            return row.id, note.id

    return make


@pytest.fixture(scope="session")
def stamped_cfdi() -> Callable[[str], bytes]:
    """A sealed CFDI stamped by our sandbox PAC, for a given SAT UUID."""

    def make(sat_uuid: str) -> bytes:
        from worker.cfdi.csd import sandbox_pac_csd
        from worker.cfdi.factory import build_invoice
        from worker.cfdi.tfd import add_tfd

        sealed = build_invoice(
            receptor_rfc="URE180429TM6", receptor_cp="06000", receptor_regimen="601", uso_cfdi="G03"
        )
        return add_tfd(
            sealed, uuid=sat_uuid, fecha_timbrado=T0.strftime("%Y-%m-%dT%H:%M:%S"), pac=sandbox_pac_csd()
        )

    return make


def later(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def notification(sessions: sessionmaker[Session], notification_id: str) -> Notification:
    with sessions() as s:
        row = s.get(Notification, notification_id)
        assert row is not None
        return row


def attempts(sessions: sessionmaker[Session], notification_id: str) -> list[Any]:
    from sqlalchemy import select

    from worker.db.models import DeliveryAttempt

    with sessions() as s:
        return list(
            s.scalars(
                select(DeliveryAttempt)
                .where(DeliveryAttempt.notification_id == notification_id)
                .order_by(DeliveryAttempt.id)
            )
        )
