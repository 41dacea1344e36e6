"""The stamping decision table (worker/invoices/policy.py), row by row."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from worker.db.models import utcnow
from worker.finkok.errors import Kind
from worker.invoices.policy import Refused, Retry, Stamped, Verdict, decide, duplicate
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
    ("account", Refused(Kind.ACCOUNT, ERR), 1, "stamp", "failed", "NOK", False, "account"),
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
    if edge == "retry":
        assert d.retry_in_s is not None
        assert d.values["next_attempt_at"] == now + timedelta(seconds=d.retry_in_s)
        # an ambiguous call may still be running at Finkok: wait at least one read timeout
        assert (d.retry_in_s >= 30) is check
    else:
        assert d.retry_in_s is None
