"""Outbox delivery over real HTTP against the SIF sandbox and a real database: every
answer SIF can give, and what the row, the attempt log and SIF hold afterwards."""

from __future__ import annotations

import logging
import random
import socket
import threading

import pytest
from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session, sessionmaker

from worker.db import breakers
from worker.db.models import AuditLog, Breaker, DeliveryAttempt, Notification
from worker.db.states import NotificationState as N
from worker.invoices.notify import DeliveryOutcome, deliver, target_key
from worker.invoices.sweep import due_notifications
from worker.ops.resend import ResendError, enqueue_resend
from worker.sandbox.sif import BODY_409, SifSandbox
from worker.settings import Settings
from worker.sif.client import SifClient
from worker.sif.payload import build_ok

from .conftest import (
    EMPRESA,
    SECRET,
    T0,
    MakeRows,
    attempts,
    later,
    make_settings,
    notification,
)

OWNER = "worker-1:123"


def run(
    sessions: sessionmaker[Session],
    nid: str,
    client: SifClient,
    settings: Settings,
    seconds: float = 0,
    owner: str = OWNER,
) -> DeliveryOutcome:
    return deliver(sessions, nid, client=client, settings=settings, owner=owner,
                   now=later(seconds), rng=random.Random(1))


def test_204_delivers(sessions: sessionmaker[Session], add_nok: MakeRows, sif: SifSandbox,
                      client: SifClient, settings: Settings) -> None:
    invoice_id, nid = add_nok(reference="R-204")
    outcome = run(sessions, nid, client, settings)
    assert (outcome.result, outcome.state, outcome.status_code) == ("delivered", N.DELIVERED, 204)
    row = notification(sessions, nid)
    assert (row.state, row.result, row.last_status_code) == ("delivered", "delivered", 204)
    assert row.delivered_at == T0 and row.lease_owner is None and row.lease_expires_at is None
    assert row.attempts == 1 and row.next_attempt_at is None
    [attempt] = attempts(sessions, nid)
    assert (attempt.status_code, attempt.error, attempt.response_body, attempt.worker) == (
        204, None, "", OWNER
    )
    assert attempt.started_at == T0
    assert sif.statuses(EMPRESA, "R-204") == ["NOK"]
    assert sif.received()[0]["body"]["folio"] == invoice_id
    # Settled: the same id again is a no-op, nothing more is sent.
    assert run(sessions, nid, client, settings, 60).result == "not_claimed"
    assert len(sif.received()) == 1


def test_409_means_sif_already_holds_the_ok(sessions: sessionmaker[Session], add_nok: MakeRows,
                                            sif: SifSandbox, client: SifClient, settings: Settings) -> None:
    ok = build_ok(reference="R-409", sat_uuid="1044D724-23CB-43A2-9AA7-C08B73FF4381", pedidoga=None,
                  stamped_xml=b"<x/>", pdf=b"%PDF-1.4",
                  datos_fiscales={"rfc": "URE180429TM6", "usoCfdi": "G03", "regimenFiscal": "601",
                                  "codigoPostal": "06000"})
    assert client.put_status(EMPRESA, ok).status_code == 204
    _, nid = add_nok(reference="R-409")
    outcome = run(sessions, nid, client, settings)
    assert (outcome.result, outcome.state, outcome.status_code) == ("already_held", N.DELIVERED, 409)
    row = notification(sessions, nid)
    assert (row.state, row.result, row.last_status_code) == ("delivered", "already_held", 409)
    [attempt] = attempts(sessions, nid)
    assert attempt.status_code == 409
    assert BODY_409["error"]["message"] in (attempt.response_body or "")
    assert sif.statuses(EMPRESA, "R-409") == ["OK"]


def test_401_holds_the_target_at_once_and_loudly(
    sessions: sessionmaker[Session], add_nok: MakeRows, sif: SifSandbox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A 401 is ours to fix, not the ERP's: the notification waits (held) and the target's
    breaker opens, so the next notification for it is held without a PUT. When the secret
    in the settings changes, the sweeper's maintenance closes the breaker and both are
    delivered once."""
    from worker.invoices.holds import maintain

    _, nid = add_nok(reference="R-401")
    _, other = add_nok(reference="R-401b")
    settings = make_settings(sif.url, sif_secret="not-the-right-secret")
    with SifClient(settings) as client, caplog.at_level(logging.INFO, "worker.invoices.notify"):
        outcome = run(sessions, nid, client, settings)
        assert (outcome.result, outcome.state, outcome.status_code) == ("unauthorized", N.HELD, 401)
        # No retry storm: not due however late, and a stray doorbell sends nothing.
        with sessions() as s:
            assert nid not in due_notifications(s, later(10**6))
        assert run(sessions, nid, client, settings, 3600).result == "not_claimed"
        # The other notification for the same target: held without a PUT.
        assert run(sessions, other, client, settings).result == "held"
    assert len(sif.received()) == 1
    row = notification(sessions, nid)
    assert (row.state, row.result, row.last_status_code) == ("held", "unauthorized", 401)
    [error] = [r for r in caplog.records if r.levelno == logging.ERROR
               and r.name == "worker.invoices.notify"]
    assert "401" in error.getMessage() and EMPRESA in error.getMessage() and "SIF_TEST" in error.getMessage()
    assert "not-the-right-secret" not in caplog.text
    [attempt] = attempts(sessions, nid)
    assert "Token de autorizaci" in (attempt.response_body or "")

    # Negative control: the same wrong settings release nothing.
    with sessions.begin() as s:
        assert maintain(s, settings, later(2)).released_notifications == []
    fixed = make_settings(sif.url)  # the right secret: the target's digest changed
    with sessions.begin() as s:
        released = maintain(s, fixed, later(2)).released_notifications
    assert sorted(released) == sorted([nid, other])
    with SifClient(fixed) as client:
        assert run(sessions, nid, client, fixed, 3).result == "delivered"
        assert run(sessions, other, client, fixed, 3).result == "delivered"
    assert sif.statuses(EMPRESA, "R-401") == ["NOK"] and sif.statuses(EMPRESA, "R-401b") == ["NOK"]


def test_400_fails_as_our_bug(sessions: sessionmaker[Session], add_nok: MakeRows, sif: SifSandbox,
                              caplog: pytest.LogCaptureFixture) -> None:
    _, nid = add_nok()
    settings = make_settings(sif.url, sif_generator_id="")  # SIF refuses a request without it
    with SifClient(settings) as client, caplog.at_level(logging.ERROR, "worker.invoices.notify"):
        outcome = run(sessions, nid, client, settings)
    assert (outcome.result, outcome.state, outcome.status_code) == ("bad_request", N.FAILED, 400)
    assert "generatorId" in caplog.text and "bug" in caplog.text


def test_404_retries_then_recovers(sessions: sessionmaker[Session], add_nok: MakeRows, sif: SifSandbox,
                                   client: SifClient, settings: Settings) -> None:
    _, nid = add_nok(reference="R-404")
    sif.configure(faults=["404", "404"])
    first = run(sessions, nid, client, settings)
    assert (first.result, first.state, first.status_code) == ("retry_404", N.RETRY_WAIT, 404)
    assert first.next_attempt_at is not None and T0 <= first.next_attempt_at <= later(1)
    row = notification(sessions, nid)
    assert (row.state, row.first_404_at, row.lease_owner) == ("retry_wait", T0, None)

    second_at = (first.next_attempt_at - T0).total_seconds() + 0.001
    second = run(sessions, nid, client, settings, second_at)
    assert second.result == "retry_404"
    assert notification(sessions, nid).first_404_at == T0  # the window counts from the first 404
    third = run(sessions, nid, client, settings, (second.next_attempt_at - T0).total_seconds())  # type: ignore[operator]
    assert (third.result, third.state) == ("delivered", N.DELIVERED)
    assert [a.status_code for a in attempts(sessions, nid)] == [404, 404, 204]
    assert sif.statuses(EMPRESA, "R-404") == ["NOK"]


def test_404_window_exceeded_fails_as_not_found(sessions: sessionmaker[Session], add_nok: MakeRows,
                                                sif: SifSandbox) -> None:
    sif.configure(known_empresas=["some-other-empresa"])
    settings = make_settings(sif.url, notify_404_window_s=60, notify_max_attempts=2)
    _, nid = add_nok()
    with SifClient(settings) as client:
        outcomes = [run(sessions, nid, client, settings, s) for s in (0, 20, 40)]
        assert [o.result for o in outcomes] == ["retry_404"] * 3  # 404s do not use up max_attempts
        assert all(o.next_attempt_at <= later(60) for o in outcomes)  # type: ignore[operator]
        last = run(sessions, nid, client, settings, 60)
    assert (last.result, last.state) == ("not_found", N.FAILED)
    row = notification(sessions, nid)
    assert (row.state, row.result, row.first_404_at) == ("failed", "not_found", T0)
    assert len(attempts(sessions, nid)) == 4 == len(sif.received())


def test_5xx_backs_off_with_full_jitter_then_exhausts(sessions: sessionmaker[Session], add_nok: MakeRows,
                                                      sif: SifSandbox, client: SifClient,
                                                      settings: Settings) -> None:
    sif.configure(error_rate=1.0, error_status=503)
    _, nid = add_nok()
    now = 0.0
    caps = [1.0, 2.0]  # base 1 s doubling, under the 4 s cap; max_attempts 3
    for cap in caps:
        outcome = run(sessions, nid, client, settings, now)
        assert (outcome.result, outcome.state, outcome.status_code) == ("retry_http_503", N.RETRY_WAIT, 503)
        assert outcome.next_attempt_at is not None
        delay = (outcome.next_attempt_at - later(now)).total_seconds()
        assert 0 <= delay <= cap
        now += delay
    final = run(sessions, nid, client, settings, now)
    assert (final.result, final.state) == ("exhausted", N.FAILED)
    assert [a.status_code for a in attempts(sessions, nid)] == [503, 503, 503]


def test_backoff_is_capped_and_jittered() -> None:
    from worker.sif.policy import backoff_delay_s

    rng = random.Random(3)
    delays = [backoff_delay_s(10, base_s=5, max_s=900, rng=rng) for _ in range(200)]
    assert max(delays) <= 900 and min(delays) >= 0
    assert max(delays) > 600 and min(delays) < 300  # spread over the whole range: full jitter
    assert backoff_delay_s(1, base_s=5, max_s=900, rng=random.Random(0)) <= 5


def test_timeout_retries_then_delivers(sessions: sessionmaker[Session], add_nok: MakeRows,
                                       sif: SifSandbox) -> None:
    settings = make_settings(sif.url, sif_read_timeout_s=0.2)
    sif.configure(faults=["hang"], hang_s=5)
    _, nid = add_nok(reference="R-TO")
    with SifClient(settings) as client:
        first = run(sessions, nid, client, settings)
        assert (first.result, first.state, first.status_code) == ("retry_timeout", N.RETRY_WAIT, None)
        [attempt] = attempts(sessions, nid)
        assert attempt.status_code is None and (attempt.error or "").startswith("timeout: ")
        assert attempt.duration_ms >= 150
        second = run(sessions, nid, client, settings, 10)
    assert second.result == "delivered"
    assert sif.statuses(EMPRESA, "R-TO") == ["NOK"]


def test_connection_refused_retries(sessions: sessionmaker[Session], add_nok: MakeRows) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = make_settings(f"http://127.0.0.1:{port}/mcs/sif")
    _, nid = add_nok()
    with SifClient(settings) as client:
        outcome = run(sessions, nid, client, settings)
    assert (outcome.result, outcome.state, outcome.status_code) == ("retry_connection", N.RETRY_WAIT, None)
    [attempt] = attempts(sessions, nid)
    assert (attempt.error or "").startswith("connection: ") and "NewConnectionError" in (attempt.error or "")
    assert notification(sessions, nid).last_status_code is None


def test_an_invalid_body_is_never_sent(sessions: sessionmaker[Session], add_nok: MakeRows,
                                       sif: SifSandbox, client: SifClient, settings: Settings,
                                       caplog: pytest.LogCaptureFixture) -> None:
    _, bad_body = add_nok(reference="")
    _, bad_path = add_nok(empresa_ref_id="empresa/../other")
    with caplog.at_level(logging.ERROR, "worker.invoices.notify"):
        body_outcome = run(sessions, bad_body, client, settings)
        path_outcome = run(sessions, bad_path, client, settings)
    assert (body_outcome.result, body_outcome.state) == ("invalid_request", N.FAILED)
    assert (path_outcome.result, path_outcome.state) == ("invalid_request", N.FAILED)
    assert sif.received() == []
    [a1] = attempts(sessions, bad_body)
    assert a1.status_code is None
    assert a1.error == "not sent: SIF body invalid: reference: '' should be non-empty"
    [a2] = attempts(sessions, bad_path)
    assert "empresaRefId" in (a2.error or "")
    assert "reference" in caplog.text


def test_no_secret_in_attempt_rows_or_logs(sessions: sessionmaker[Session], add_nok: MakeRows,
                                           sif: SifSandbox, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    settings = make_settings(sif.url, sif_read_timeout_s=0.2, notify_max_attempts=5)
    sif.configure(faults=["hang", "503", "drop"], hang_s=3)
    _, nid = add_nok()
    with SifClient(settings) as client:
        for i in range(4):
            run(sessions, nid, client, settings, i * 10)
    with SifClient(make_settings(sif.url, sif_secret=SECRET + "-wrong")) as wrong:
        _, other = add_nok()
        run(sessions, other, wrong, settings)
    rows = attempts(sessions, nid) + attempts(sessions, other)
    assert [a.status_code for a in rows] == [None, 503, None, 204, 401]
    for row in rows:
        for column in DeliveryAttempt.__table__.columns:
            assert SECRET not in str(getattr(row, column.key))
    assert SECRET not in caplog.text


def test_due_notifications_for_the_sweeper(sessions: sessionmaker[Session], add_nok: MakeRows,
                                           sif: SifSandbox, client: SifClient, settings: Settings) -> None:
    _, queued = add_nok()
    _, later_queued = add_nok()
    _, delivered = add_nok()
    _, waiting = add_nok()
    _, sending = add_nok()
    with sessions.begin() as s:
        s.get(Notification, later_queued).next_attempt_at = later(100)  # type: ignore[union-attr]
    run(sessions, delivered, client, settings)
    sif.configure(faults=["503"])
    wait = run(sessions, waiting, client, settings)
    from worker.db.lifecycle import claim_notification

    with sessions.begin() as s:
        assert claim_notification(s, sending, owner="dead-worker", lease_s=30, now=T0)
    with sessions() as s:
        assert set(due_notifications(s, T0)) == {queued}
        assert set(due_notifications(s, later(31))) == {queued, waiting, sending}
        assert set(due_notifications(s, later(100))) == {queued, waiting, sending, later_queued}
        assert len(due_notifications(s, later(100), limit=2)) == 2
    assert wait.next_attempt_at is not None and wait.next_attempt_at <= later(1)


def test_resend_requeues_with_an_audit_row(sessions: sessionmaker[Session], add_nok: MakeRows,
                                           sif: SifSandbox, client: SifClient, settings: Settings) -> None:
    invoice_id, nid = add_nok(reference="R-RS")
    assert run(sessions, nid, client, settings).result == "delivered"
    with sessions.begin() as s:
        assert enqueue_resend(s, invoice_id, actor="ops@example", reason="SIF lost it", now=later(5)) == nid
    row = notification(sessions, nid)
    assert (row.state, row.result, row.next_attempt_at) == ("queued", None, later(5))
    with sessions() as s:
        [audit] = s.scalars(select(AuditLog)).all()
        assert (audit.actor, audit.action, audit.invoice_id, audit.notification_id, audit.reason) == (
            "ops@example", "resend", invoice_id, nid, "SIF lost it")
        assert audit.details == {"from_state": "delivered", "previous_result": "delivered"}
        assert nid in due_notifications(s, later(5))
    assert run(sessions, nid, client, settings, 5).result == "delivered"
    assert sif.statuses(EMPRESA, "R-RS") == ["NOK", "NOK"]
    with sessions.begin() as s, pytest.raises(ResendError, match="unknown-id"):
        enqueue_resend(s, "unknown-id", actor="ops", reason="x")


def test_resend_is_refused_while_in_flight(sessions: sessionmaker[Session], add_nok: MakeRows) -> None:
    _, nid = add_nok()
    with sessions.begin() as s, pytest.raises(ResendError, match="is queued"):
        enqueue_resend(s, nid, actor="ops", reason="again")
    with sessions() as s:
        assert s.scalars(select(AuditLog)).all() == []


def test_resend_after_exhaustion_gets_a_fresh_budget(sessions: sessionmaker[Session], add_nok: MakeRows,
                                                     sif: SifSandbox) -> None:
    settings = make_settings(sif.url, notify_max_attempts=1)
    sif.configure(faults=["503", "503"])
    _, nid = add_nok()
    with SifClient(settings) as client:
        assert run(sessions, nid, client, settings).result == "exhausted"
        with sessions.begin() as s:
            enqueue_resend(s, nid, actor="ops", reason="SIF is back", now=later(60))
        assert run(sessions, nid, client, settings, 60).result == "exhausted"  # one try again
        with sessions.begin() as s:
            enqueue_resend(s, nid, actor="ops", reason="SIF is really back", now=later(120))
        assert run(sessions, nid, client, settings, 120).result == "delivered"


def test_a_worker_whose_lease_was_taken_over_cannot_settle(
    sessions: sessionmaker[Session], add_nok: MakeRows, sif: SifSandbox, client: SifClient,
    settings: Settings,
) -> None:
    """A is slow past its lease; B takes the row over. A's late answer is recorded as an
    attempt but changes nothing: the row is B's to settle."""
    sif.configure(latency_s=0.5)
    _, nid = add_nok(reference="R-LEASE")
    results: dict[str, DeliveryOutcome] = {}
    slow = threading.Thread(
        target=lambda: results.setdefault("A", run(sessions, nid, client, settings, 0, "A"))
    )
    slow.start()
    assert sif.wait_for_requests(1)
    results["B"] = run(sessions, nid, client, settings, settings.claim_lease_s + 1, "B")
    slow.join(10)
    assert results["A"].result == "lease_lost" and results["A"].state is None
    assert results["B"].result == "delivered"
    row = notification(sessions, nid)
    assert (row.state, row.lease_owner, row.attempts) == ("delivered", None, 2)
    assert sorted(a.worker for a in attempts(sessions, nid)) == ["A", "B"]


def test_real_clock_when_now_is_not_given(sessions: sessionmaker[Session], add_nok: MakeRows,
                                          sif: SifSandbox, client: SifClient, settings: Settings) -> None:
    from worker.db.models import utcnow

    _, nid = add_nok()
    before = utcnow()
    outcome = deliver(sessions, nid, client=client, settings=settings, owner=OWNER)
    after = utcnow()
    assert outcome.result == "delivered"
    row = notification(sessions, nid)
    [attempt] = attempts(sessions, nid)
    assert row.delivered_at is not None and before <= attempt.started_at <= row.delivered_at <= after


def _breaker_statements(engine: Engine) -> list[str]:
    """Every statement that reads or writes the breakers table on its own, from now on."""
    seen: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.lstrip().startswith(("UPDATE breakers", "SELECT breakers")):
            seen.append(statement.split(maxsplit=1)[0])
    event.listen(engine, "after_cursor_execute", record)
    return seen


def test_quiet_breakers_cost_no_statement_and_a_counted_failure_is_reset(
        engine: Engine, sessions: sessionmaker[Session], add_nok: MakeRows, sif: SifSandbox,
        client: SifClient, settings: Settings) -> None:
    """Every breaker closed with no failure counted: the delivery neither reads nor writes
    the breakers (the claim's read says so). One counted SIF failure: the next 204 reads the
    target's breaker and resets the count (the negative control of the first part)."""
    statements = _breaker_statements(engine)
    _, nid = add_nok(reference="R-quiet")
    assert run(sessions, nid, client, settings).result == "delivered"
    assert statements == []

    key = target_key(settings, EMPRESA)
    with sessions.begin() as s:  # another delivery's 503, counted toward the breaker
        breakers.note_failure(s, key, code="503", cause="SIF unavailable (503)", threshold=5,
                              window_s=60, probe_after_s=1, now=T0)
    _, nid = add_nok(reference="R-counted")
    assert run(sessions, nid, client, settings).result == "delivered"
    assert "SELECT" in statements and "UPDATE" in statements
    with sessions() as s:
        breaker = s.get(Breaker, key)
        assert breaker is not None and (breaker.state, breaker.failures) == ("closed", 0)
