"""Intake: every refusal names its reason; idempotency, conflict and replace; exact bytes."""

from __future__ import annotations

import hashlib
import re
import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from worker.cfdi.factory import build_invoice
from worker.db.models import AuditLog, Invoice
from worker.db.states import InvoiceState
from worker.invoices.intake import InvoiceConflict, InvoiceRefused, SubmitResult, submit


class Recorder:
    """A doorbell that records what it was asked to ring."""

    def __init__(self, rung: list[str]) -> None:
        self.rung = rung

    def __call__(self, row_id: str, *, reference: str | None = None) -> bool:
        self.rung.append(row_id)
        return True


IDS = {"empresa_ref_id": "00000000-0000-1000-0000-000000000001", "reference": "0016921514"}


@pytest.fixture(scope="module")
def sealed() -> bytes:
    return build_invoice(folio="1001")


@pytest.fixture(scope="module")
def other_sealed() -> bytes:
    return build_invoice(folio="1002")


def _count(sessions: sessionmaker[Session]) -> int:
    with sessions() as s:
        return s.scalar(select(func.count()).select_from(Invoice)) or 0


def _refused(sessions: sessionmaker[Session], xml: bytes, reason: str, text: str, **kw: object) -> None:
    args = {**IDS, **kw}
    with pytest.raises(InvoiceRefused) as info:
        submit(sessions, xml, **args)  # type: ignore[arg-type]
    assert info.value.reason == reason
    assert text in str(info.value)
    assert _count(sessions) == 0  # nothing half-written


def test_created_stores_exact_bytes_and_publishes_after_commit(
    sessions: sessionmaker[Session], sealed: bytes
) -> None:
    seen: list[tuple[str, str | None]] = []

    def publish(invoice_id: str, *, reference: str | None = None) -> bool:
        with sessions() as other:  # another session sees the row: it was committed first
            row = other.get(Invoice, invoice_id)
            seen.append((invoice_id, row.state if row else None))
        assert reference == IDS["reference"]  # Flower names the ERP's reference
        return True

    result = submit(sessions, sealed, pedidoga="123435", publish=publish, **IDS)
    assert result.outcome == "created" and result.published
    assert seen == [(result.invoice_id, "received")]
    with sessions() as s:
        row = s.get(Invoice, result.invoice_id)
        assert row is not None
        assert row.xml == sealed
        assert row.xml_sha256 == hashlib.sha256(sealed).hexdigest()
        assert (row.empresa_ref_id, row.reference, row.pedidoga) == (
            IDS["empresa_ref_id"], IDS["reference"], "123435"
        )
        assert row.state == InvoiceState.RECEIVED and row.attempts == 0
        assert re.fullmatch(r"[A-Z&Ñ]{3,4}\d{6}[A-Z0-9]{3}", row.emisor_rfc)


def test_same_invoice_twice_is_one_invoice(sessions: sessionmaker[Session], sealed: bytes) -> None:
    published: list[str] = []
    first = submit(sessions, sealed, publish=Recorder(published), **IDS)
    again = submit(sessions, sealed, publish=Recorder(published), **IDS)
    assert again.invoice_id == first.invoice_id
    assert again.outcome == "existing" and not again.published
    assert published == [first.invoice_id]
    assert _count(sessions) == 1


def test_concurrent_duplicate_submits_make_one_row(sessions: sessionmaker[Session], sealed: bytes) -> None:
    results = []
    barrier = threading.Barrier(6)

    def go() -> None:
        barrier.wait()
        results.append(submit(sessions, sealed, **IDS))

    threads = [threading.Thread(target=go) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r.invoice_id for r in results}) == 1
    assert sorted(r.outcome for r in results) == ["created"] + ["existing"] * 5
    assert _count(sessions) == 1


def test_different_xml_for_same_reference_is_a_conflict(
    sessions: sessionmaker[Session], sealed: bytes, other_sealed: bytes
) -> None:
    first = submit(sessions, sealed, **IDS)
    with pytest.raises(InvoiceConflict) as info:
        submit(sessions, other_sealed, **IDS)
    assert info.value.invoice_id == first.invoice_id
    assert "different XML" in str(info.value)
    with pytest.raises(InvoiceConflict, match="only rejected or failed"):
        submit(sessions, other_sealed, replace=True, **IDS)  # received: not replaceable
    with sessions() as s:
        assert s.get(Invoice, first.invoice_id).xml == sealed  # type: ignore[union-attr]


@pytest.mark.parametrize("state", [InvoiceState.REJECTED, InvoiceState.FAILED])
def test_replace_a_rejected_or_failed_invoice(
    sessions: sessionmaker[Session], sealed: bytes, other_sealed: bytes, state: InvoiceState
) -> None:
    first = submit(sessions, sealed, **IDS)
    with sessions.begin() as s:
        row = s.get(Invoice, first.invoice_id)
        row.state = state  # type: ignore[union-attr]
        row.errors = [{"code": "CFDI40143", "message": "x", "kind": "fiscal_data"}]  # type: ignore[union-attr]
    published: list[str] = []
    result = submit(sessions, other_sealed, replace=True, publish=Recorder(published),
                    actor="ops", reason="corrected receptor", **IDS)
    assert (result.invoice_id, result.outcome, result.state) == (first.invoice_id, "replaced", "received")
    assert published == [first.invoice_id]
    with sessions() as s:
        row = s.get(Invoice, first.invoice_id)
        assert row is not None
        assert row.xml == other_sealed and row.xml_version == 2 and row.errors is None
        audit = s.scalars(select(AuditLog)).one()
        assert (audit.actor, audit.action, audit.invoice_id, audit.reason) == (
            "ops", "replace-xml", first.invoice_id, "corrected receptor")
    assert _count(sessions) == 1


def test_replace_refused_when_a_stamp_may_exist(
    sessions: sessionmaker[Session], sealed: bytes, other_sealed: bytes
) -> None:
    first = submit(sessions, sealed, **IDS)
    with sessions.begin() as s:
        row = s.get(Invoice, first.invoice_id)
        row.state = InvoiceState.FAILED  # type: ignore[union-attr]
        row.must_check_stamped = True  # type: ignore[union-attr]
    with pytest.raises(InvoiceConflict, match="reprocess it before replacing"):
        submit(sessions, other_sealed, replace=True, **IDS)


def test_publish_failure_keeps_the_invoice(
    sessions: sessionmaker[Session], sealed: bytes, tmp_path: Path
) -> None:
    """The real doorbell on a broker that is down: the ring is dropped (logged), the row
    stays committed and due for the sweeper."""
    from worker.celery_app import STAMP_TASK, create_app
    from worker.doorbell import bell_for
    from worker.settings import load_settings

    dead = create_app(load_settings(data_dir=tmp_path, broker_url="redis://127.0.0.1:1/0"))
    dead.conf.broker_connection_max_retries = 0
    dead.conf.broker_transport_options = {"socket_connect_timeout": 0.5, "max_retries": 0}
    result = submit(sessions, sealed, publish=bell_for(dead, STAMP_TASK), **IDS)
    assert result.outcome == "created" and not result.published
    with sessions() as s:
        row = s.get(Invoice, result.invoice_id)
        assert row is not None and row.state == "received" and row.next_attempt_at is not None


# --- refusals ----------------------------------------------------------------------------

def test_refuses_not_well_formed(sessions: sessionmaker[Session], sealed: bytes) -> None:
    _refused(sessions, sealed[: len(sealed) // 2], "not_well_formed", "not well-formed XML")


def test_refuses_xxe(sessions: sessionmaker[Session]) -> None:
    xxe = b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>'
    _refused(sessions, xxe, "dtd_forbidden", "DTD or entity declaration")


def test_refuses_billion_laughs(sessions: sessionmaker[Session]) -> None:
    lol = (b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "lol"><!ENTITY b "&a;&a;&a;&a;&a;">'
           b'<!ENTITY c "&b;&b;&b;&b;&b;">]><l>&c;</l>')
    _refused(sessions, lol, "dtd_forbidden", "DTD or entity declaration")


def test_refuses_oversize(sessions: sessionmaker[Session], sealed: bytes) -> None:
    _refused(sessions, sealed, "too_large", f"is {len(sealed)} bytes, over the limit of 1000 bytes",
             max_xml_bytes=1000)


def test_refuses_wrong_root(sessions: sessionmaker[Session]) -> None:
    _refused(sessions, b"<factura/>", "not_cfdi40", "root element is factura")


def test_refuses_cfdi33(sessions: sessionmaker[Session], sealed: bytes) -> None:
    v33 = sealed.replace(b'Version="4.0"', b'Version="3.3"', 1)
    _refused(sessions, v33, "not_cfdi40", "Version is '3.3', expected '4.0'")
    old_ns = sealed.replace(b"http://www.sat.gob.mx/cfd/4", b"http://www.sat.gob.mx/cfd/3")
    _refused(sessions, old_ns, "not_cfdi40", "expected cfdi:Comprobante")


def test_refuses_unsealed(sessions: sessionmaker[Session], sealed: bytes) -> None:
    unsealed = re.sub(rb' Sello="[^"]*"', b"", sealed, count=1)
    _refused(sessions, unsealed, "unsealed", "missing Sello")


def test_refuses_already_stamped(sessions: sessionmaker[Session], sealed: bytes) -> None:
    from worker.cfdi.csd import sandbox_pac_csd
    from worker.cfdi.tfd import add_tfd

    stamped = add_tfd(sealed, uuid="1044D724-23CB-43A2-9AA7-C08B73FF4381",
                      fecha_timbrado="2026-11-21T10:00:00", pac=sandbox_pac_csd())
    _refused(sessions, stamped, "already_stamped", "TimbreFiscalDigital (Finkok would answer 707)")


def test_refuses_non_utf8(sessions: sessionmaker[Session], sealed: bytes) -> None:
    latin1 = sealed.replace(b"UTF-8", b"ISO-8859-1", 1)
    _refused(sessions, latin1, "not_utf8", "CFDI must be UTF-8")
    _refused(sessions, sealed[:200] + b"\xff\xfe" + sealed[200:], "not_utf8", "not valid UTF-8")


@pytest.mark.parametrize(
    ("kw", "text"),
    [({"empresa_ref_id": ""}, "empresaRefId is required"),
     ({"reference": ""}, "reference is required"),
     ({"reference": " x"}, "reference must be"),
     ({"pedidoga": "p" * 65}, "pedidoga must be 1-64")],
)
def test_refuses_missing_or_bad_ids(
    sessions: sessionmaker[Session], sealed: bytes, kw: dict[str, str], text: str
) -> None:
    _refused(sessions, sealed, "missing_id" if "required" in text else "invalid_id", text, **kw)


def test_submit_many_reports_each_item(
    sessions: sessionmaker[Session], sealed: bytes, other_sealed: bytes
) -> None:
    from worker.invoices.intake import Submission, submit_many

    first = submit(sessions, sealed, **IDS)
    published: list[str] = []
    e = IDS["empresa_ref_id"]
    results = submit_many(
        sessions,
        [
            Submission(sealed, e, IDS["reference"]),  # existing
            Submission(other_sealed, e, "new-1"),  # created
            Submission(b"<x/>", e, "bad"),  # refused
            Submission(other_sealed, e, IDS["reference"]),  # conflict
            Submission(other_sealed, e, "new-1"),  # duplicate inside the batch: same invoice
        ],
        publish=Recorder(published),
    )
    assert isinstance(results[0], SubmitResult) and results[0].invoice_id == first.invoice_id
    assert results[0].outcome == "existing"
    assert isinstance(results[1], SubmitResult) and results[1].outcome == "created"
    assert isinstance(results[2], InvoiceRefused) and results[2].reason == "not_cfdi40"
    assert isinstance(results[3], InvoiceConflict)
    assert isinstance(results[4], SubmitResult) and results[4].invoice_id == results[1].invoice_id
    assert results[4].outcome == "existing"
    assert published == [results[1].invoice_id]
    assert _count(sessions) == 2
