"""The decision logic for one invoice, against the Finkok sandbox over real HTTP, on
SQLite and PostgreSQL. No broker here: the Celery wiring is tested in test_worker.py."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from worker.cfdi.factory import build_invoice
from worker.db.models import Invoice, utcnow
from worker.finkok.client import FinkokClient
from worker.invoices.intake import submit
from worker.invoices.pending import due_pending, poll_one
from worker.invoices.policy import retry_delay_s
from worker.invoices.stamping import stamp_invoice
from worker.invoices.sweep import due_invoices
from worker.sandbox.finkok import FinkokSandbox
from worker.settings import Settings

REJECTED_RFC = "XEXX010101000"
NO_SLEEP = lambda _s: None  # noqa: E731


def _submit(sessions: sessionmaker[Session], ref: str = "R1", **kw: object) -> tuple[str, bytes]:
    xml = build_invoice(folio=ref, **kw)  # type: ignore[arg-type]
    return submit(sessions, xml, empresa_ref_id="E1", reference=ref).invoice_id, xml


def _run(sessions, client, settings, invoice_id, owner="w1"):  # type: ignore[no-untyped-def]
    return stamp_invoice(sessions, client, settings, invoice_id, owner=owner, sleep=NO_SLEEP,
                         rng=random.Random(1))


def _row(sessions: sessionmaker[Session], invoice_id: str) -> Invoice:
    with sessions() as s:
        row = s.get(Invoice, invoice_id)
        assert row is not None
        _ = row.stamp_attempts, row.notifications
        s.expunge_all()
        return row


def _make_due(sessions: sessionmaker[Session], invoice_id: str) -> None:
    with sessions.begin() as s:
        s.execute(update(Invoice).where(Invoice.id == invoice_id)
                  .values(next_attempt_at=utcnow() - timedelta(seconds=1)))


def test_happy_path_stamps_once_and_queues_ok(
    sessions: sessionmaker[Session], client: FinkokClient, settings: Settings, finkok: FinkokSandbox
) -> None:
    invoice_id, xml = _submit(sessions)
    out = _run(sessions, client, settings, invoice_id)
    assert out.state == "stamped" and len(out.notification_ids) == 1
    row = _row(sessions, invoice_id)
    doc = finkok.document_stats(xml)
    assert doc is not None and doc["uuids"] == [row.sat_uuid] and doc["new_stamps"] == 1
    assert row.stamped_xml is not None and row.sat_uuid.encode() in row.stamped_xml  # type: ignore[union-attr]
    assert not row.must_check_stamped and row.lease_owner is None
    assert [(a.operation, a.outcome) for a in row.stamp_attempts] == [("stamp", "success")]
    assert [(n.status, n.state) for n in row.notifications] == [("OK", "queued")]
    # duplicate and late messages are harmless
    for _ in range(5):
        assert _run(sessions, client, settings, invoice_id).state == "skipped"
    assert finkok.stats()["calls"] == {"stamp.stamp": 1}


def test_fiscal_data_rejection_keeps_codes_and_queues_nok(
    sessions: sessionmaker[Session], client: FinkokClient, settings: Settings, finkok: FinkokSandbox
) -> None:
    finkok.configure(rules={REJECTED_RFC: "reject:CFDI40143"})
    invoice_id, _ = _submit(sessions, receptor_rfc=REJECTED_RFC)
    assert _run(sessions, client, settings, invoice_id).state == "rejected"
    row = _row(sessions, invoice_id)
    assert row.error_kind == "fiscal_data"
    assert row.errors and row.errors[0]["code"] == "CFDI40143" and row.errors[0]["message"]
    assert [(n.status, n.state) for n in row.notifications] == [("NOK", "queued")]


def test_permanent_rejection(sessions: sessionmaker[Session], client: FinkokClient,
                             settings: Settings, finkok: FinkokSandbox) -> None:
    invoice_id, xml = _submit(sessions)
    with sessions.begin() as s:  # break the seal: Finkok answers 302
        s.execute(update(Invoice).where(Invoice.id == invoice_id)
                  .values(xml=xml.replace(b'Total="', b'Total="1', 1)))
    assert _run(sessions, client, settings, invoice_id).state == "rejected"
    row = _row(sessions, invoice_id)
    assert row.error_kind == "permanent" and row.errors[0]["code"] == "302"  # type: ignore[index]


def test_account_fault_holds_without_a_nok_or_a_burnt_attempt(
    sessions: sessionmaker[Session], client: FinkokClient, settings: Settings, finkok: FinkokSandbox
) -> None:
    """702 is the emisor's setup at Finkok, not the document: held on that emisor's breaker
    (no NOK, the attempt given back), and the next invoice of that emisor makes no call."""
    finkok.configure(rules={"URE180429TM6": "account:702"})
    invoice_id, _ = _submit(sessions)
    assert _run(sessions, client, settings, invoice_id).state == "held"
    row = _row(sessions, invoice_id)
    assert (row.error_kind, row.attempts, row.errors[0]["code"]) == ("held", 0, "702")  # type: ignore[index]
    assert row.hold_key == f"finkok:emisor:{row.emisor_rfc}"
    assert row.notifications == []
    calls = finkok.stats()["calls"].get("stamp.stamp", 0)
    second, _ = _submit(sessions, ref="R2")
    assert _run(sessions, client, settings, second).state == "held"
    assert finkok.stats()["calls"].get("stamp.stamp", 0) == calls  # no call while open


def test_307_with_xml_is_taken(sessions: sessionmaker[Session], client: FinkokClient,
                               settings: Settings, finkok: FinkokSandbox) -> None:
    invoice_id, xml = _submit(sessions)
    first = client.stamp(xml)  # someone stamped these exact bytes before us
    assert _run(sessions, client, settings, invoice_id).state == "pending"
    row = _row(sessions, invoice_id)
    assert row.sat_uuid == first.uuid
    assert [(a.operation, a.codes) for a in row.stamp_attempts] == [("stamp", ["307"])]
    assert finkok.document_stats(xml)["new_stamps"] == 1  # type: ignore[index]


def test_307_without_xml_recovers_through_stamped(
    sessions: sessionmaker[Session], client: FinkokClient, settings: Settings, finkok: FinkokSandbox
) -> None:
    finkok.configure(stamp_307_with_xml=False, stamped_603_calls=1)
    invoice_id, xml = _submit(sessions)
    first = client.stamp(xml)
    assert _run(sessions, client, settings, invoice_id).state == "pending"
    row = _row(sessions, invoice_id)
    assert row.sat_uuid == first.uuid
    ops = [(a.operation, a.outcome) for a in row.stamp_attempts]
    assert ops[0] == ("stamp", "already_stamped") and ops[-1] == ("stamped", "success")
    assert len(ops) == 3  # one 603 (Finkok's lag) then the stamp: bounded, not a loop


def test_transient_fault_retries_with_backoff_then_asks_stamped_first(
    sessions: sessionmaker[Session], client: FinkokClient, settings: Settings, finkok: FinkokSandbox
) -> None:
    finkok.configure(rules={"URE180429TM6": "fault_once"})
    invoice_id, xml = _submit(sessions)
    out = _run(sessions, client, settings, invoice_id)
    assert out.state == "retry_wait" and out.retry_in_s is not None
    row = _row(sessions, invoice_id)
    assert row.must_check_stamped  # a fault may hide a stamp
    assert row.next_attempt_at > row.state_changed_at  # type: ignore[operator]
    with sessions.begin() as s:  # not due yet: a message arriving early changes nothing
        s.execute(update(Invoice).where(Invoice.id == invoice_id)
                  .values(next_attempt_at=utcnow() + timedelta(minutes=1)))
    assert _run(sessions, client, settings, invoice_id).state == "skipped"
    _make_due(sessions, invoice_id)
    assert _run(sessions, client, settings, invoice_id).state == "stamped"
    ops = [(a.operation, a.outcome) for a in _row(sessions, invoice_id).stamp_attempts]
    assert ops[-2:] == [("stamped", "not_stamped"), ("stamp", "success")]
    assert finkok.document_stats(xml)["new_stamps"] == 1  # type: ignore[index]


def test_stamp_then_dropped_connection_is_recovered_without_a_second_stamp(
    sessions: sessionmaker[Session], client: FinkokClient, settings: Settings, finkok: FinkokSandbox
) -> None:
    finkok.configure(rules={"URE180429TM6": "drop_once"})
    invoice_id, xml = _submit(sessions)
    assert _run(sessions, client, settings, invoice_id).state == "retry_wait"
    assert _row(sessions, invoice_id).must_check_stamped
    _make_due(sessions, invoice_id)
    assert _run(sessions, client, settings, invoice_id).state == "pending"
    row = _row(sessions, invoice_id)
    doc = finkok.document_stats(xml)
    assert doc["uuids"] == [row.sat_uuid] and doc["new_stamps"] == 1 and doc["stamp_calls"] == 1  # type: ignore[index]
    assert [(a.operation, a.outcome) for a in row.stamp_attempts] == [
        ("stamp", "ambiguous"), ("stamped", "success")]


def test_hang_past_the_timeout_is_ambiguous(
    sessions: sessionmaker[Session], client: FinkokClient, settings: Settings, finkok: FinkokSandbox
) -> None:
    finkok.configure(rules={"URE180429TM6": "hang_once"}, hang_s=1.5)
    invoice_id, xml = _submit(sessions)
    assert _run(sessions, client, settings, invoice_id).state == "retry_wait"
    row = _row(sessions, invoice_id)
    assert row.must_check_stamped
    # we waited at least one more read timeout before the next attempt may ask `stamped`
    assert row.next_attempt_at - row.state_changed_at >= timedelta(seconds=1)  # type: ignore[operator]
    # Finkok finishes the abandoned call late, and stamps; the next attempt finds it.
    import time

    deadline = time.monotonic() + 5
    while (finkok.document_stats(xml) or {}).get("new_stamps") != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    _make_due(sessions, invoice_id)
    assert _run(sessions, client, settings, invoice_id).state == "pending"
    assert finkok.document_stats(xml)["new_stamps"] == 1  # type: ignore[index]


def test_attempts_are_bounded(sessions: sessionmaker[Session], client: FinkokClient,
                              settings: Settings, finkok: FinkokSandbox) -> None:
    finkok.configure(fault_rate=1.0)
    invoice_id, xml = _submit(sessions)
    states = []
    for _ in range(settings.stamp_max_attempts):
        _make_due(sessions, invoice_id)
        states.append(_run(sessions, client, settings, invoice_id).state)
    assert states == ["retry_wait"] * (settings.stamp_max_attempts - 1) + ["failed"]
    row = _row(sessions, invoice_id)
    # faults are ambiguous: we cannot tell SIF "not stamped", a person reprocesses
    assert row.error_kind == "unknown" and row.must_check_stamped and row.notifications == []


def test_connection_refused_is_not_ambiguous(sessions: sessionmaker[Session], settings: Settings) -> None:
    invoice_id, _ = _submit(sessions)
    dead = settings.model_copy(update={"finkok_environment": "http://127.0.0.1:9"})
    with FinkokClient.from_settings(dead) as c:
        assert _run(sessions, c, dead, invoice_id).state == "retry_wait"
    row = _row(sessions, invoice_id)
    assert not row.must_check_stamped
    assert row.stamp_attempts[0].outcome == "not_sent"


def test_pending_is_polled_until_delivered(
    sessions: sessionmaker[Session], client: FinkokClient, settings: Settings, finkok: FinkokSandbox
) -> None:
    finkok.configure(rules={"URE180429TM6": ["drop_once", "pending"]}, pending_polls=2)
    invoice_id, _ = _submit(sessions)
    _run(sessions, client, settings, invoice_id)
    _make_due(sessions, invoice_id)
    assert _run(sessions, client, settings, invoice_id).state == "pending"
    states = []
    for _ in range(4):
        _make_due(sessions, invoice_id)
        with sessions() as s:
            assert due_pending(s, utcnow()) == [invoice_id]
        states.append(poll_one(sessions, client, settings, invoice_id, owner="beat").state)
        if states[-1] == "stamped":
            break
    assert states == ["pending", "pending", "stamped"]
    row = _row(sessions, invoice_id)
    assert row.sat_status == "F"
    assert [n.status for n in row.notifications] == ["OK"]  # sif_ok_at=stamp: sent at once


def test_ok_waits_for_sat_when_configured(
    sessions: sessionmaker[Session], client: FinkokClient, settings: Settings, finkok: FinkokSandbox
) -> None:
    at_sat = settings.model_copy(update={"sif_ok_at": "sat"})
    invoice_id, _ = _submit(sessions)
    out = _run(sessions, client, at_sat, invoice_id)
    assert out.state == "pending" and out.notification_ids == ()
    _make_due(sessions, invoice_id)
    polled = poll_one(sessions, client, at_sat, invoice_id, owner="beat")
    assert polled.state == "stamped" and len(polled.notification_ids) == 1


def test_expired_lease_is_recovered_as_ambiguous(
    sessions: sessionmaker[Session], client: FinkokClient, settings: Settings, finkok: FinkokSandbox
) -> None:
    from worker.invoices.stamping import claim

    invoice_id, xml = _submit(sessions)
    job = claim(sessions, invoice_id, owner="dead-worker", settings=settings)
    assert job is not None
    client.stamp(xml)  # the dead worker's call reached Finkok; its answer died with it
    with sessions.begin() as s:
        s.execute(update(Invoice).where(Invoice.id == invoice_id)
                  .values(lease_expires_at=utcnow() - timedelta(seconds=1)))
    with sessions() as s:
        assert invoice_id in due_invoices(s, utcnow(), grace_s=10)
    assert _run(sessions, client, settings, invoice_id, owner="w2").state == "pending"
    row = _row(sessions, invoice_id)
    assert [a.operation for a in row.stamp_attempts] == ["stamped"]
    assert finkok.document_stats(xml)["new_stamps"] == 1  # type: ignore[index]


def test_same_document_under_two_references_is_not_stamped_twice(
    sessions: sessionmaker[Session], client: FinkokClient, settings: Settings
) -> None:
    xml = build_invoice(folio="dup")
    a = submit(sessions, xml, empresa_ref_id="E1", reference="A").invoice_id
    b = submit(sessions, xml, empresa_ref_id="E1", reference="B").invoice_id
    assert _run(sessions, client, settings, a).state == "stamped"
    assert _run(sessions, client, settings, b).state == "rejected"
    assert _row(sessions, b).errors[0]["code"] == "DUPLICATE"  # type: ignore[index]


def test_backoff_schedule_grows_and_is_capped(settings: Settings) -> None:
    s = settings.model_copy(update={"stamp_backoff_base_s": 2.0, "stamp_backoff_max_s": 60.0})
    rng = random.Random(7)
    for attempts, step in [(1, 2), (2, 4), (3, 8), (5, 32), (6, 60), (12, 60)]:
        delays = [retry_delay_s(attempts, settings=s, rng=rng) for _ in range(200)]
        assert step / 2 <= min(delays) and max(delays) <= step  # equal jitter in [step/2, step]
        assert max(delays) - min(delays) > step / 10  # and it is jittered


def test_sweeper_leaves_fresh_doorbells_alone(sessions: sessionmaker[Session]) -> None:
    """Intake rang the doorbell itself: the sweeper re-rings only after sweep_rering_after_s."""
    from worker.invoices.sweep import ring_due

    invoice_id, _ = _submit(sessions)
    later = utcnow() + timedelta(seconds=30)  # past the 10 s grace, within the 60 s re-ring
    with sessions.begin() as s:
        assert ring_due(s, later, grace_s=10, rering_after_s=60).invoices == []
    much_later = utcnow() + timedelta(seconds=90)
    with sessions.begin() as s:
        assert ring_due(s, much_later, grace_s=10, rering_after_s=60).invoices == [invoice_id]
    with sessions.begin() as s:  # rung now: not again at the next sweep
        assert ring_due(s, much_later + timedelta(seconds=2), grace_s=10,
                        rering_after_s=60).invoices == []


@pytest.mark.parametrize(("queued", "rung"), [
    (None, 5),  # the broker cannot say: every due row, as before
    (0, 5),  # an empty queue: every due row lost its doorbell
    (5, 0),  # as many doorbells waiting as due rows: each may be waiting its turn
    (7, 0),  # more (duplicates): none
    (3, 2),  # two rows have no doorbell: the two oldest are rung
])
def test_sweeper_sets_due_rows_against_the_doorbells_still_queued(
    sessions: sessionmaker[Session], queued: int | None, rung: int
) -> None:
    """A backlog older than sweep_rering_after_s is not rung twice while its doorbells
    still wait in the queue; rows beyond what the queue holds are (the oldest first)."""
    from worker.invoices.sweep import ring_due

    ids = [_submit(sessions, ref=f"Q{i}")[0] for i in range(5)]
    with sessions.begin() as s:  # enqueued in this order, a second apart
        for i, invoice_id in enumerate(ids):
            row = s.get(Invoice, invoice_id)
            assert row is not None and row.next_attempt_at is not None
            row.next_attempt_at = row.next_attempt_at - timedelta(seconds=100 - i)
    much_later = utcnow() + timedelta(seconds=90)
    with sessions.begin() as s:
        due = ring_due(s, much_later, grace_s=10, rering_after_s=60, queued=(queued, None))
    assert due.invoices == ids[:rung]
    with sessions.begin() as s:  # the rest stay due for the next sweep, unmarked
        left = ring_due(s, much_later, grace_s=10, rering_after_s=60)
    assert left.invoices == ids[rung:]


def test_settle_survives_a_dropped_database_connection(
    sessions: sessionmaker[Session], client: FinkokClient, settings: Settings,
    finkok: FinkokSandbox, db_url: str,
) -> None:
    """The database drops the task's connection while Finkok stamps: the settle transaction
    is tried again on a new connection (tenacity), the stamp is not lost and Finkok is
    called once."""
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite has no server connection to drop (the PostgreSQL run covers it)")
    from sqlalchemy import text

    from worker.db.session import create_db_engine, pinned_sessions
    from worker.invoices.stamping import claim, settle, talk_to_finkok

    invoice_id, xml = _submit(sessions)
    engine = create_db_engine(db_url)
    try:
        with pinned_sessions(engine) as pinned:
            job = claim(pinned, invoice_id, owner="w1", settings=settings)
            assert job is not None
            with pinned() as s:
                pid = s.scalar(text("SELECT pg_backend_pid()"))
            calls: list = []  # type: ignore[type-arg]
            verdict = talk_to_finkok(client, job, calls, settings=settings, sleep=lambda _: None)
            with sessions.begin() as other:  # the server drops the task's connection
                assert other.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            outcome = settle(pinned, job, verdict, calls, owner="w1", settings=settings)
        assert outcome.state == "stamped"
    finally:
        engine.dispose()
    row = _row(sessions, invoice_id)
    assert row.state == "stamped" and row.sat_uuid
    assert [a.operation for a in row.stamp_attempts] == ["stamp"]  # recorded once
    assert finkok.document_stats(xml)["new_stamps"] == 1  # type: ignore[index]


class _GarbledFinkok:
    """The sandbox's real answers, with the stamped XML garbled on the way back (what a
    UTF-16 document once made Finkok return): the one thing no sandbox switch produces."""

    def __init__(self, real: FinkokClient) -> None:
        self.real = real

    def stamp(self, xml: bytes):  # type: ignore[no-untyped-def]
        from dataclasses import replace

        result = self.real.stamp(xml)
        return replace(result, xml="\ufeff<cfdi:Comprobante><broken")

    def stamped(self, xml: bytes):  # type: ignore[no-untyped-def]
        return self.real.stamped(xml)

    def query_pending(self, uuid: str):  # type: ignore[no-untyped-def]
        return self.real.query_pending(uuid)


def test_a_stamp_whose_xml_does_not_parse_is_never_settled_as_stamped(
    sessions: sessionmaker[Session], client: FinkokClient, settings: Settings,
    finkok: FinkokSandbox,
) -> None:
    invoice_id, xml = _submit(sessions)
    out = stamp_invoice(sessions, _GarbledFinkok(client), settings, invoice_id, owner="w1")
    assert out.state == "failed"
    row = _row(sessions, invoice_id)
    assert (row.error_kind, row.must_check_stamped) == ("unreadable", True)
    assert row.sat_uuid == finkok.document_stats(xml)["uuids"][0]  # type: ignore[index]  # kept
    assert row.notifications == []  # no OK from an XML we cannot read, and no NOK


def test_an_ok_born_claimed_is_what_the_notifier_would_read_and_it_is_delivered(
    sessions: sessionmaker[Session], client: FinkokClient, settings: Settings,
    finkok: FinkokSandbox,
) -> None:
    """``deliverer``: the fresh stamp's OK row is born claimed (sending, leased to it, its
    first attempt counted) and comes back in memory; what it carries is exactly what the
    notifier reads back from the database, and ``send`` delivers it with no claim. A NOK is
    never born claimed, and without a deliverer the OK is queued and rung (the controls)."""
    from dataclasses import asdict

    from worker.db.models import Notification
    from worker.invoices.notify import _read_claimed, send
    from worker.sandbox.sif import SifSandbox
    from worker.settings import load_settings
    from worker.sif.client import SifClient

    invoice_id, _ = _submit(sessions, "R-born")
    out = stamp_invoice(sessions, client, settings, invoice_id, owner="w1", sleep=NO_SLEEP,
                        deliverer="host:1:first-abc")
    assert out.state == "stamped" and out.handed is not None
    assert out.follow_ups == ()  # nothing to ring: the deliverer has it
    with sessions() as s:
        row = s.get(Notification, out.handed.id)
        assert row is not None
        assert (row.state, row.lease_owner, row.attempts) == ("sending", "host:1:first-abc", 1)
        assert row.lease_expires_at is not None and row.lease_expires_at > utcnow()
        assert asdict(_read_claimed(s, out.handed.id)) == asdict(out.handed)  # type: ignore[arg-type]

    secret = "born-secret-123"
    with SifSandbox(secret=secret) as sif:
        sif_settings = load_settings(**{**settings.model_dump(), "sif_base_url": sif.url,
                                        "sif_secret": secret, "sif_generator_id": "SIF_TEST"})
        with SifClient(sif_settings) as sif_client:
            sent = send(sessions, out.handed, client=sif_client, settings=sif_settings,
                        owner="host:1:first-abc")
        assert (sent.result, sent.status_code) == ("delivered", 204)
        assert [r["body"]["status"] for r in sif.received()] == ["OK"]
    with sessions() as s:
        row = s.get(Notification, out.handed.id)
        assert row is not None and (row.state, row.attempts, row.lease_owner) == (
            "delivered", 1, None)

    plain, _ = _submit(sessions, "R-plain")
    out = _run(sessions, client, settings, plain)
    assert out.handed is None and [r.row_id for r in out.follow_ups] == list(out.notification_ids)
    finkok.configure(rules={REJECTED_RFC: "reject:CFDI40143"})
    refused, _ = _submit(sessions, "R-nok", receptor_rfc=REJECTED_RFC)
    out = stamp_invoice(sessions, client, settings, refused, owner="w1", sleep=NO_SLEEP,
                        deliverer="host:1:first-def")
    assert out.state == "rejected" and out.handed is None and len(out.follow_ups) == 1
