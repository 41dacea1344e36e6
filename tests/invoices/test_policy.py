"""The stamping decision table (worker/invoices/policy.py), row by row."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from worker.db.models import utcnow
from worker.finkok.errors import Kind
from worker.invoices.policy import (
    Hold,
    Refused,
    Retry,
    Stamped,
    Verdict,
    decide,
    duplicate,
    window_closed,
)
from worker.settings import load_settings

STAMP = Stamped("U-1", "<tfd/>", "2026-11-30T10:00:00", "300010")
RECOVERED = Stamped("U-1", "<tfd/>", "2026-11-30T10:00:00", "300010", pending_sat=True)
ERR = [{"code": "708", "message": "no se pudo conectar al SAT", "kind": "transient"}]
MAX = 4

# verdict, attempts, sif_ok_at -> edge, outbox, must_check_stamped, error_kind
TABLE: list[tuple[str, Verdict, int, str, str, str | None, bool, str | None]] = [
    ("fresh stamp", STAMP, 1, "stamp", "stamped", "OK", False, None),
    ("fresh stamp, OK at SAT", STAMP, 1, "sat", "pending", None, False, None),
    ("recovered stamp", RECOVERED, 2, "stamp", "pending", "OK", False, None),
    ("recovered stamp, OK at SAT", RECOVERED, 2, "sat", "pending", None, False, None),
    ("fiscal data", Refused(Kind.FISCAL_DATA, ERR), 1, "stamp", "rejected", "NOK", False, "fiscal_data"),
    ("permanent", Refused(Kind.PERMANENT, ERR), 1, "stamp", "rejected", "NOK", False, "permanent"),
    ("duplicate", duplicate("I-0", "U-0"), 1, "stamp", "rejected", "NOK", False, "permanent"),
    ("account fault", Hold("finkok:account", "718", "out of credits", ERR, True, True), 2,
     "stamp", "hold", None, False, "held"),
    ("window closing", window_closed(), 2, "stamp", "failed", "NOK", False, "window"),
    ("definite retry", Retry(False, ERR), 1, "stamp", "retry", None, False, None),
    ("ambiguous retry", Retry(True, ERR), 1, "stamp", "retry", None, True, None),
    ("ambiguous, exhausted", Retry(True, ERR), MAX, "stamp", "failed", None, True, "unknown"),
    ("definite, exhausted", Retry(False, ERR), MAX, "stamp", "failed", "NOK", False, "exhausted"),
]


@pytest.mark.parametrize(("verdict", "attempts", "ok_at", "edge", "outbox", "check", "kind"),
                         [row[1:] for row in TABLE], ids=[row[0] for row in TABLE])
def test_decision_table(verdict: Verdict, attempts: int, ok_at: str, edge: str,
                        outbox: str | None, check: bool, kind: str | None) -> None:
    settings = load_settings(stamp_max_attempts=MAX, sif_ok_at=ok_at, finkok_read_timeout_s=30,
                             stamp_backoff_base_s=1, stamp_backoff_max_s=8,
                             pending_poll_interval_s=5)
    now = utcnow()
    d = decide(verdict, attempts=attempts, settings=settings, now=now, rng=random.Random(1))
    assert (d.edge.name, d.outbox) == (edge, outbox)
    assert d.values["must_check_stamped"] is check
    assert d.values.get("error_kind") == kind
    if isinstance(verdict, Stamped):
        assert d.values["sat_uuid"] == "U-1" and d.values["stamped_xml"] == b"<tfd/>"
        waits = d.edge.name == "pending"
        assert d.values["next_attempt_at"] == (now + timedelta(seconds=5) if waits else None)
    if edge == "hold":  # the claim's attempt is given back: an outage burns nothing
        assert d.values["attempts"] == attempts - 1 and d.values["hold_key"] == "finkok:account"
    if edge == "retry":
        assert d.retry_in_s is not None
        assert d.values["next_attempt_at"] == now + timedelta(seconds=d.retry_in_s)
        # an ambiguous call may still be running at Finkok: wait at least one read timeout
        assert (d.retry_in_s >= 30) is check
    else:
        assert d.retry_in_s is None


def test_a_hold_without_an_answer_keeps_must_check_stamped() -> None:
    """No call was made (a breaker was open): what we knew about Finkok stays as it was."""
    settings = load_settings()
    held = Hold("finkok:service", "708", "SAT unavailable", ERR, answered=False, opens=False)
    d = decide(held, attempts=3, settings=settings, now=utcnow())
    assert d.edge.name == "hold" and "must_check_stamped" not in d.values


@pytest.mark.parametrize(("ambiguous", "edge", "outbox"), [(False, "failed", "NOK"),
                                                           (True, "retry", None)])
def test_window_closing_fails_a_definite_retry_but_not_an_ambiguous_one(
    ambiguous: bool, edge: str, outbox: str | None
) -> None:
    """Past the deadline a definite "not stamped" fails with the named NOK; an ambiguous one
    may hold a stamp at Finkok, so it keeps asking `stamped` (no NOK)."""
    settings = load_settings(stamp_max_attempts=MAX)
    now = utcnow()
    d = decide(Retry(ambiguous, ERR), attempts=1, settings=settings, now=now,
               deadline=now - timedelta(seconds=1))
    assert (d.edge.name, d.outbox) == (edge, outbox)
    if outbox:
        assert d.values["errors"][0]["code"] == "SAT72H"
        assert "72-hour window" in d.values["errors"][0]["message"]


def test_retries_never_wait_past_the_window() -> None:
    settings = load_settings(stamp_backoff_base_s=600, stamp_backoff_max_s=600)
    now = utcnow()
    d = decide(Retry(False, ERR), attempts=3, settings=settings, now=now,
               deadline=now + timedelta(seconds=30))
    assert d.edge.name == "retry" and d.retry_in_s is not None and d.retry_in_s <= 30


def test_an_unreadable_stamp_keeps_its_uuid_and_sends_nothing() -> None:
    from worker.invoices.policy import Unreadable

    settings = load_settings()
    d = decide(Unreadable("U-9", "<<not xml", ERR), attempts=1, settings=settings, now=utcnow())
    assert (d.edge.name, d.outbox) == ("failed", None)  # never `stamped`, never a NOK
    assert d.values["sat_uuid"] == "U-9" and d.values["must_check_stamped"] is True
    assert d.values["error_kind"] == "unreadable"
