"""Cancellation end to end against the local Finkok over real HTTP, on SQLite and
PostgreSQL: the door's rules, the signed request, SAT's status sequence, the acuse kept
byte for byte, and exactly one request at Finkok when an answer is lost."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from worker.cancellations.door import CancelRefused, request_cancellation
from worker.cancellations.polling import due, poll_one
from worker.cancellations.sending import send_cancellation
from worker.cfdi.cancellation import verify_cancelacion
from worker.cfdi.factory import build_invoice
from worker.db.models import AuditLog, Cancellation, Invoice, StampAttempt, utcnow
from worker.finkok.client import FinkokClient
from worker.invoices.intake import submit
from worker.invoices.stamping import stamp_invoice
from worker.sandbox.finkok import FinkokSandbox
from worker.settings import Settings

RECEPTOR = "URE180429TM6"


def _stamped(sessions: sessionmaker[Session], client: FinkokClient, settings: Settings,
             ref: str) -> tuple[str, str]:
    invoice_id = submit(sessions, build_invoice(folio=ref), empresa_ref_id="E1",
                        reference=ref).invoice_id
    out = stamp_invoice(sessions, client, settings, invoice_id, owner="w", sleep=lambda _s: None)
    assert out.state == "stamped"
    return invoice_id, str(out.detail)


def _request(sessions: sessionmaker[Session], settings: Settings, key: str, motivo: str = "02",
             substitute: str | None = None) -> str:
    out = request_cancellation(sessions, settings.cancel_csds, key, motivo=motivo,
                               substitute=substitute, reason="test", actor="tester")
    assert out.cancellation_id
    return out.cancellation_id


def _row(sessions: sessionmaker[Session], cid: str) -> Cancellation:
    with sessions() as s:
        row = s.get(Cancellation, cid)
        assert row is not None
        s.expunge(row)
        return row


def _make_due(sessions: sessionmaker[Session], cid: str) -> None:
    with sessions.begin() as s:
        s.execute(update(Cancellation).where(Cancellation.id == cid)
                  .values(next_attempt_at=utcnow() - timedelta(seconds=1)))


def _send(sessions, client, settings, cid):  # type: ignore[no-untyped-def]
    return send_cancellation(sessions, client, settings, cid, owner="w1", rng=random.Random(1))


def _poll_until_final(sessions, client, settings, cid, limit=10):  # type: ignore[no-untyped-def]
    states = []
    for _ in range(limit):
        _make_due(sessions, cid)
        states.append(poll_one(sessions, client, settings, cid, worker="poller"))
        if states[-1] != "in_process":
            break
    return states


def _sandbox_record(finkok: FinkokSandbox, uuid: str):  # type: ignore[no-untyped-def]
    rec = finkok.simulator.ledger.find_uuid(uuid)
    assert rec is not None
    return rec


@pytest.mark.parametrize("motivo", ["02", "03", "04"])
def test_motivo_cancels_and_keeps_the_acuse_bytes(
    sessions: sessionmaker[Session], client: FinkokClient, settings: Settings,
    finkok: FinkokSandbox, motivo: str,
) -> None:
    invoice_id, uuid = _stamped(sessions, client, settings, f"C{motivo}")
    cid = _request(sessions, settings, uuid, motivo)
    # the same request again is the same cancellation; another motivo is a conflict
    assert _request(sessions, settings, invoice_id, motivo) == cid
    with pytest.raises(CancelRefused) as exc:
        _request(sessions, settings, invoice_id, "03" if motivo != "03" else "02")
    assert exc.value.reason == "conflict"
    out = _send(sessions, client, settings, cid)
    assert (out.state, out.detail) == ("in_process", "201")
    assert _send(sessions, client, settings, cid).state == "skipped"  # a late doorbell
    assert _poll_until_final(sessions, client, settings, cid) == ["cancelled"]
    row = _row(sessions, cid)
    rec = _sandbox_record(finkok, uuid)
    assert row.acuse == rec.cancel_acuse.encode("utf-8")  # exactly what the sandbox sent
    assert (row.motivo, row.sat_estado, row.sat_estatus_cancelacion) == (
        motivo, "Cancelado", "Cancelado sin aceptación")
    # the request that went out is signed and verifies, with the emisor's certificate
    assert row.request_xml is not None
    assert verify_cancelacion(row.request_xml).folios == ((uuid, motivo, None),)
    assert rec.cancel_requests == 1
    with sessions() as s:
        ops = [a.operation for a in s.query(StampAttempt).filter_by(invoice_id=invoice_id)
               .order_by(StampAttempt.id)]
        audit = s.query(AuditLog).filter_by(invoice_id=invoice_id, action="cancel").all()
    assert ops == ["stamp", "cancel_signature", "get_sat_status"]
    assert len(audit) == 1 and audit[0].reason == "test" and audit[0].details["motivo"] == motivo


def test_motivo_01_needs_a_stamped_substitute_of_ours(
    sessions: sessionmaker[Session], client: FinkokClient, settings: Settings, finkok: FinkokSandbox,
) -> None:
    _, old = _stamped(sessions, client, settings, "OLD")
    _, new = _stamped(sessions, client, settings, "NEW")
    missing = "0D3C1E2A-1111-4222-8333-444455556666"
    for substitute, reason in [(None, "motivo"), (missing, "substitute_missing"), (old, "motivo")]:
        with pytest.raises(CancelRefused) as exc:
            _request(sessions, settings, old, "01", substitute)
        assert exc.value.reason == reason, exc.value
    # an invoice of ours that is not stamped cannot substitute
    unstamped = submit(sessions, build_invoice(folio="UNST"), empresa_ref_id="E1",
                       reference="UNST").invoice_id
    fake_uuid = "0D3C1E2A-1111-4222-8333-444455550000"
    with sessions.begin() as s:  # a row that holds a UUID but is not stamped (failed)
        s.execute(update(Invoice).where(Invoice.id == unstamped)
                  .values(sat_uuid=fake_uuid, state="failed"))
    with pytest.raises(CancelRefused) as exc:
        _request(sessions, settings, old, "01", fake_uuid)
    assert exc.value.reason == "substitute_unstamped"
    with sessions() as s:
        assert s.query(Cancellation).count() == 0  # nothing stored for a refusal
    cid = _request(sessions, settings, old, "01", new.lower())
    assert _send(sessions, client, settings, cid).state == "in_process"
    assert _poll_until_final(sessions, client, settings, cid) == ["cancelled"]
    row = _row(sessions, cid)
    assert verify_cancelacion(row.request_xml).folios == ((old, "01", new),)
    # the substitute cannot itself be cancelled away for the one just cancelled
    with pytest.raises(CancelRefused) as exc:
        _request(sessions, settings, new, "01", old)
    assert exc.value.reason == "substitute_cancelled"


def test_receptor_accepts_after_en_proceso(
    sessions: sessionmaker[Session], client: FinkokClient, settings: Settings, finkok: FinkokSandbox,
) -> None:
    finkok.configure(rules={RECEPTOR: "cancel_accept"}, cancel_process_polls=2)
    _, uuid = _stamped(sessions, client, settings, "ACC")
    cid = _request(sessions, settings, uuid)
    assert _send(sessions, client, settings, cid).state == "in_process"
    assert _poll_until_final(sessions, client, settings, cid) == ["in_process", "in_process", "cancelled"]
    row = _row(sessions, cid)
    assert (row.sat_estado, row.sat_estatus_cancelacion, row.es_cancelable, row.polls) == (
        "Cancelado", "Cancelado con aceptación", "Cancelable con aceptación", 3)
    assert row.cancelled_at is not None and row.next_attempt_at is None


def test_receptor_rejects_then_a_new_request(
    sessions: sessionmaker[Session], client: FinkokClient, settings: Settings, finkok: FinkokSandbox,
) -> None:
    finkok.configure(rules={RECEPTOR: "cancel_reject"}, cancel_process_polls=1)
    invoice_id, uuid = _stamped(sessions, client, settings, "REJ")
    cid = _request(sessions, settings, uuid)
    assert _send(sessions, client, settings, cid).state == "in_process"
    assert _poll_until_final(sessions, client, settings, cid) == ["in_process", "cancel_rejected"]
    row = _row(sessions, cid)
    assert (row.state, row.sat_estado, row.sat_estatus_cancelacion) == (
        "cancel_rejected", "Vigente", "Solicitud rechazada")
    # asked again (the receptor agreed by phone): the same row, back to requested, audited
    finkok.configure(rules={}, cancel_process_polls=0)
    out = request_cancellation(sessions, settings.cancel_csds, invoice_id, motivo="02",
                               reason="second try", actor="tester")
    assert (out.status, out.cancellation_id) == ("rerequested", cid)
    assert _send(sessions, client, settings, cid).state == "in_process"
    assert _poll_until_final(sessions, client, settings, cid) == ["cancelled"]
    assert _sandbox_record(finkok, uuid).cancel_requests == 2


def test_lost_answer_asks_finkok_before_sending_again(
    sessions: sessionmaker[Session], client: FinkokClient, settings: Settings, finkok: FinkokSandbox,
) -> None:
    """The request reaches SAT, the answer is dropped: the retry finds the acuse through
    get_receipt and sends nothing; one request at the sandbox."""
    _, uuid = _stamped(sessions, client, settings, "DROP")
    cid = _request(sessions, settings, uuid)
    finkok.configure(drop_rate=1.0, fault_ops=["cancel_signature"])
    out = _send(sessions, client, settings, cid)
    assert out.state == "requested" and out.retry_in_s is not None
    row = _row(sessions, cid)
    assert row.must_check and row.errors and row.errors[0]["code"] == "ambiguous"
    finkok.configure(drop_rate=0.0, fault_ops=None)
    _make_due(sessions, cid)
    with sessions() as s:
        assert due(s, utcnow()).to_send == [cid]  # the beat's poller would send it
    # SAT already shows it cancelled (sin aceptación): settled without a second request
    assert _send(sessions, client, settings, cid).state == "cancelled"
    row = _row(sessions, cid)
    rec = _sandbox_record(finkok, uuid)
    assert not row.must_check and row.acuse == rec.cancel_acuse.encode("utf-8")
    assert rec.cancel_requests == 1
    assert finkok.stats()["calls"]["cancel.cancel_signature"] == 1


def test_expired_csd_from_files_is_refused_by_the_sandbox(
    sessions: sessionmaker[Session], client: FinkokClient, settings: Settings, finkok: FinkokSandbox,
    tmp_path: Path,
) -> None:
    """cancel_csds from files (cer, encrypted key, password file); SAT's 304 for a
    certificate that expired: cancel_failed, and the password appears nowhere."""
    import datetime as dt

    from cryptography.hazmat.primitives import serialization

    from worker.cfdi.csd import generate_csd

    _, uuid = _stamped(sessions, client, settings, "EXP")
    old = generate_csd("AAA010101AAA", "EMPRESA DE PRUEBAS RUPTURE", valid_days=2,
                       not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=10))
    password = "pw-Secret-4-csd"
    (tmp_path / "e.cer").write_bytes(old.cert_der)
    (tmp_path / "e.key").write_bytes(old.key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password.encode())))
    (tmp_path / "e.pass").write_text(password + "\n")
    files = {"cer": str(tmp_path / "e.cer"), "key": str(tmp_path / "e.key"),
             "password_file": str(tmp_path / "e.pass")}
    expired = settings.model_copy(update={"cancel_csds": {"AAA010101AAA": files}})
    cid = _request(sessions, expired, uuid)
    out = _send(sessions, client, expired, cid)
    assert (out.state, out.detail) == ("cancel_failed", "304")
    row = _row(sessions, cid)
    assert row.errors and row.errors[0]["code"] == "304"
    assert password not in repr(row.errors) and password.encode() not in (row.request_xml or b"")
    assert _sandbox_record(finkok, uuid).cancel_requests == 0


def test_door_refuses_what_cannot_be_cancelled(
    sessions: sessionmaker[Session], client: FinkokClient, settings: Settings, finkok: FinkokSandbox,
) -> None:
    received = submit(sessions, build_invoice(folio="RCV"), empresa_ref_id="E1",
                      reference="RCV").invoice_id
    cases = [(received, "02", "not_stamped"), ("nope", "02", "not_found")]
    _, uuid = _stamped(sessions, client, settings, "OK1")
    cases += [(uuid, "05", "motivo")]
    for key, motivo, reason in cases:
        with pytest.raises(CancelRefused) as exc:
            _request(sessions, settings, key, motivo)
        assert exc.value.reason == reason
    no_csd = settings.model_copy(update={"cancel_csds": {}})
    with pytest.raises(CancelRefused) as exc:
        _request(sessions, no_csd, uuid)
    assert exc.value.reason == "no_csd" and "BILLING_CANCEL_CSDS" in str(exc.value)
    out = request_cancellation(sessions, settings.cancel_csds, uuid, motivo="02", reason="r",
                               actor="a", dry_run=True)
    assert out.status == "would_create" and out.cancellation_id is None
    with sessions() as s:
        assert s.query(Cancellation).count() == 0


@pytest.mark.slow
def test_the_broker_tasks_cancel_an_invoice_end_to_end(
    tmp_path: Path, finkok: FinkokSandbox,
) -> None:
    """A producer sends `billing.cancel_invoice` (kwargs only, JSON); a real worker runs the
    door, rings `billing.send_cancellation`, and `billing.poll_cancellations` (the beat's
    task, sent by hand here) follows SAT's status until it is final. A malformed message
    is answered with its reason and stores nothing."""
    import time

    from celery.contrib.testing.worker import start_worker

    from worker.cancellations.tasks import CANCEL_TASK, POLL_CANCELLATIONS_TASK
    from worker.db.migrate import upgrade
    from worker.db.session import create_db_engine, session_factory
    from worker.settings import load_settings
    from worker.tasks import create_worker_app

    settings = load_settings(data_dir=tmp_path / "var", broker_url="filesystem://",
                             database_url=f"sqlite:///{tmp_path / 'billing.db'}",
                             finkok_environment=finkok.url, cancel_poll_base_s=0.1)
    upgrade(settings.database_url)
    sessions = session_factory(create_db_engine(settings.database_url))
    with FinkokClient.from_settings(settings) as client:  # (one database: no sqlite/pg param)
        invoice_id, uuid = _stamped(sessions, client, settings, "BRK-1")
    app = create_worker_app(settings)
    with start_worker(app, pool="solo", perform_ping_check=False,
                      queues=["stamp", "intake", "maintenance"], shutdown_timeout=20):
        app.send_task(CANCEL_TASK, kwargs={"invoice": "BRK-1"})  # no motivo, no reason
        app.send_task(CANCEL_TASK, kwargs={"invoice": "BRK-1", "motivo": "02",
                                           "reason": "wrong amount"},
                      kwargsrepr="BRK-1 02")
        deadline = time.monotonic() + 60
        state = None
        while time.monotonic() < deadline:
            with sessions() as s:
                row = s.query(Cancellation).filter_by(invoice_id=invoice_id).one_or_none()
                state = row.state if row else None
            if state == "cancelled":
                break
            app.send_task(POLL_CANCELLATIONS_TASK)  # what the beat does
            time.sleep(0.5)
    assert state == "cancelled"
    assert _sandbox_record(finkok, uuid).cancel_requests == 1  # type: ignore[attr-defined]
    with sessions() as s:
        assert s.query(Cancellation).count() == 1  # the malformed message stored nothing
    # Reporting: the metrics and `billing stats` count cancellations by state.
    from worker.ops.metrics import create_registry
    from worker.ops.stats import compute_stats

    engine = create_db_engine(settings.database_url)
    try:
        value = create_registry(engine).get_sample_value
        assert value("billing_cancellations", {"state": "cancelled"}) == 1.0
        assert value("billing_cancellations", {"state": "in_process"}) == 0.0
        with session_factory(engine)() as s:
            assert compute_stats(s).cancellations["cancelled"] == 1
    finally:
        engine.dispose()


@pytest.mark.slow
def test_sigkill_mid_request_ends_in_exactly_one_cancellation(
    tmp_path: Path, finkok: FinkokSandbox,
) -> None:
    """The worker process group dies while its cancel_signature call is in flight; Finkok
    takes the request (its answer dies with the worker). After the lease expires, another
    worker takes the row over, asks get_receipt/get_sat_status first, and settles it
    without a second request: one cancellation at the sandbox."""
    import os
    import shutil
    import signal
    import subprocess
    import sys
    import time

    from worker.cancellations.tasks import POLL_CANCELLATIONS_TASK, ring_send
    from worker.celery_app import create_app
    from worker.db.migrate import upgrade
    from worker.db.session import create_db_engine, session_factory
    from worker.settings import load_settings

    settings = load_settings(data_dir=tmp_path / "var", broker_url="filesystem://",
                             database_url=f"sqlite:///{tmp_path / 'billing.db'}",
                             finkok_environment=finkok.url, cancel_poll_base_s=0.2,
                             claim_lease_s=3)
    upgrade(settings.database_url)
    sessions = session_factory(create_db_engine(settings.database_url))
    with FinkokClient.from_settings(settings) as client:  # (one database: no sqlite/pg param)
        _, uuid = _stamped(sessions, client, settings, "KILL-1")
    cid = _request(sessions, settings, "KILL-1")
    finkok.configure(latency_ms=2000)  # every call now takes 2 s: the kill lands mid-call

    env = {k: v for k, v in os.environ.items() if not k.startswith("BILLING_")}
    env.update({"BILLING_DATA_DIR": str(settings.data_dir),
                "BILLING_DATABASE_URL": settings.database_url, "BILLING_BROKER_URL": "filesystem://",
                "BILLING_FINKOK_ENVIRONMENT": finkok.url, "BILLING_CLAIM_LEASE_S": "3",
                "BILLING_CANCEL_POLL_BASE_S": "0.2", "BILLING_FINKOK_READ_TIMEOUT_S": "10"})
    script = shutil.which("billing", path=str(Path(sys.executable).parent))
    assert script
    log = tmp_path / "worker.log"

    def spawn(name: str) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            return subprocess.Popen([script, "worker", "-Q", "stamp,maintenance,intake", "-c", "1",
                                     "-n", f"{name}@%h"], env=env, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)

    producer = create_app(settings)
    first = spawn("first")
    try:
        ring_send(producer, cid)
        deadline = time.monotonic() + 60
        while (time.monotonic() < deadline
               and not finkok.stats()["calls"].get("cancel.cancel_signature")):
            time.sleep(0.1)
        assert finkok.stats()["calls"].get("cancel.cancel_signature") == 1, log.read_text()[-3000:]
        os.killpg(first.pid, signal.SIGKILL)  # the main process and its pool, mid-call
        first.wait(10)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    time.sleep(2.5)  # the sandbox finishes the request the dead worker sent
    assert _row(sessions, cid).state == "sending"
    finkok.configure(latency_ms=0)

    second = spawn("second")
    try:
        time.sleep(3.5)  # the dead worker's lease (3 s) expires
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _row(sessions, cid).state != "cancelled":
            producer.send_task(POLL_CANCELLATIONS_TASK)  # what the beat does
            time.sleep(0.5)
    finally:
        os.killpg(second.pid, signal.SIGKILL)
        second.wait(10)
    assert _row(sessions, cid).state == "cancelled", log.read_text()[-3000:]
    assert _sandbox_record(finkok, uuid).cancel_requests == 1  # exactly one at Finkok
    assert finkok.stats()["calls"]["cancel.cancel_signature"] == 1  # never sent again
