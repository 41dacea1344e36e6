"""The metrics collector against the real test database (SQLite and PostgreSQL): every
family reads what the fleet holds, the counters and the histogram are derived from
stamp_attempts/delivery_attempts, and a dead database gives `billing_database_up 0`."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from prometheus_client import generate_latest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from tests.ops.conftest import EMISOR, Fleet
from worker.db.models import utcnow
from worker.db.session import create_db_engine
from worker.ops.credits import CreditReading, store
from worker.ops.heartbeats import beat
from worker.ops.metrics import create_registry


def test_states_and_ages(engine: Engine, fleet: Fleet) -> None:
    reg = create_registry(engine)
    value = reg.get_sample_value
    assert value("billing_database_up") == 1.0
    invoices = {s: value("billing_invoices", {"state": s}) for s in (
        "received", "stamping", "retry_wait", "pending", "stamped", "rejected", "failed")}
    assert invoices == {"received": 1, "stamping": 1, "retry_wait": 1, "pending": 1,
                        "stamped": 3, "rejected": 1, "failed": 2}
    notes = {s: value("billing_notifications", {"state": s}) for s in (
        "queued", "sending", "retry_wait", "delivered", "failed")}
    assert notes == {"queued": 1, "sending": 0, "retry_wait": 0, "delivered": 3, "failed": 2}
    # Ages of the oldest row of each moving state (the fleet's clock is a moment behind).
    expected = {"received": 600, "stamping": 60, "retry_wait": 120, "pending": 1200}
    for state, age in expected.items():
        got = value("billing_invoice_oldest_age_seconds", {"state": state})
        assert age <= got < age + 30, (state, got)
    assert 300 <= value("billing_notification_oldest_age_seconds", {"state": "queued"}) < 330
    assert value("billing_notification_oldest_age_seconds", {"state": "sending"}) == 0.0
    assert value("billing_invoice_oldest_age_seconds", {"state": "stamped"}) is None  # terminal


def test_finkok_calls_histogram_and_sif(engine: Engine, fleet: Fleet) -> None:
    value = create_registry(engine).get_sample_value
    calls = {o: value("billing_finkok_calls_total", {"operation": "stamp", "outcome": o})
             for o in ("transient", "success", "fiscal_data", "ambiguous")}
    assert calls == {"transient": 2, "success": 1, "fiscal_data": 1, "ambiguous": 1}
    # durations: four calls of 100 ms, one of 300 ms
    hist = {le: value("billing_finkok_call_duration_seconds_bucket",
                      {"operation": "stamp", "le": le}) for le in ("0.05", "0.1", "0.25", "0.5",
                                                                   "60.0", "+Inf")}
    assert hist == {"0.05": 0, "0.1": 4, "0.25": 4, "0.5": 5, "60.0": 5, "+Inf": 5}
    assert value("billing_finkok_call_duration_seconds_count", {"operation": "stamp"}) == 5
    assert value("billing_finkok_call_duration_seconds_sum", {"operation": "stamp"}) == \
        pytest.approx(0.7)
    sif = {s: value("billing_sif_deliveries_total", {"status": s}) for s in ("204", "401", "none")}
    assert sif == {"204": 3, "401": 1, "none": 1}


def test_credits_and_heartbeats(engine: Engine, sessions: sessionmaker[Session]) -> None:
    now = utcnow()
    with sessions.begin() as db:
        beat(db, "sweep", interval_s=15.0, at=now - timedelta(seconds=20))
        store(db, CreditReading(EMISOR, 42, "2026-11-21T10:00:00", None), now)
        store(db, CreditReading("EKU9003173C9", None, None, None), now)  # on demand
    with sessions.begin() as db:  # a failed poll keeps the figure, flags the failure
        store(db, CreditReading(EMISOR, None, None, "FinkokNotSent: refused"), now)
        beat(db, "sweep", interval_s=15.0, at=now)  # overwritten, not a second row
    value = create_registry(engine).get_sample_value
    assert value("billing_finkok_credits", {"taxpayer_id": EMISOR}) == 42
    assert value("billing_finkok_credits_poll_failed", {"taxpayer_id": EMISOR}) == 1
    assert value("billing_finkok_credits", {"taxpayer_id": "EKU9003173C9"}) is None
    assert value("billing_finkok_credits_poll_failed", {"taxpayer_id": "EKU9003173C9"}) == 0
    assert value("billing_finkok_credits_polled_timestamp_seconds",
                 {"taxpayer_id": EMISOR}) == pytest.approx(now.timestamp())
    assert value("billing_heartbeat_timestamp_seconds", {"name": "sweep"}) == \
        pytest.approx(now.timestamp())
    assert value("billing_heartbeat_interval_seconds", {"name": "sweep"}) == 15.0


def test_exposition_text_is_conventional(engine: Engine, fleet: Fleet) -> None:
    text = generate_latest(create_registry(engine)).decode()
    assert "# TYPE billing_finkok_calls_total counter" in text
    assert "# TYPE billing_finkok_call_duration_seconds histogram" in text
    assert "# TYPE billing_invoices gauge" in text
    names = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    assert all(n.startswith("billing_") for n in names), names


def test_dead_database_still_answers_with_database_up_0(caplog: pytest.LogCaptureFixture) -> None:
    # (another test may have raised the root logger's level: ask for this logger's lines)
    caplog.set_level(logging.WARNING, logger="worker.ops.metrics")
    dead = create_db_engine("postgresql://nobody:pw-not-shown@127.0.0.1:1/none")
    reg = create_registry(dead)
    assert reg.get_sample_value("billing_database_up") == 0.0
    assert reg.get_sample_value("billing_invoices", {"state": "received"}) is None
    assert "database not readable" in caplog.text and "pw-not-shown" not in caplog.text


def test_breakers_and_held_rows(engine: Engine, sessions: sessionmaker[Session], fleet: Fleet) -> None:
    """An open breaker is 1 with its scope and cause, a closed one 0; held rows are counted
    per breaker. Closing it takes it back to 0 (what the alert keys on)."""
    from sqlalchemy import update

    from worker.db import breakers
    from worker.db.models import Invoice

    with sessions.begin() as s:
        breakers.open_(s, breakers.ACCOUNT_KEY, code="718", cause="out of credits",
                       probe_after_s=30)
        breakers.note_failure(s, breakers.SERVICE_KEY, code="708", cause="SAT down",
                              threshold=5, window_s=60, probe_after_s=30)  # 1 of 5: closed
        s.execute(update(Invoice).where(Invoice.id == fleet.ids["R-retry"])
                  .values(state="held", hold_key=breakers.ACCOUNT_KEY))
    value = create_registry(engine).get_sample_value
    assert value("billing_breaker_open", {"scope": "account", "breaker": "finkok:account",
                                          "cause": "718"}) == 1.0
    assert value("billing_breaker_open", {"scope": "service", "breaker": "finkok:service",
                                          "cause": "708"}) == 0.0
    assert value("billing_held", {"kind": "invoice", "breaker": "finkok:account"}) == 1.0
    assert value("billing_invoices", {"state": "held"}) == 1.0
    with sessions.begin() as s:
        assert breakers.succeeded(s, (breakers.ACCOUNT_KEY,)) == [breakers.ACCOUNT_KEY]
    assert create_registry(engine).get_sample_value(
        "billing_breaker_open", {"scope": "account", "breaker": "finkok:account",
                                 "cause": "718"}) == 0.0
