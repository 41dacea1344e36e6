"""Exactly-once settlement across a crash between the PUT and the commit.

Two ways to lose the answer after SIF took the status: SIF commits and drops the
connection (the worker sees an ambiguous connection error), or the worker process dies
after the PUT and before its commit (the row stays ``sending`` with a lease). Either way
the row is sent again later; SIF answers 409 (OK already held) or 204, the row ends
delivered, and SIF holds exactly one OK for the reference.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from worker.db.lifecycle import claim_notification
from worker.db.states import NotificationState as N
from worker.invoices.notify import DeliveryOutcome, deliver
from worker.invoices.sweep import due_notifications
from worker.sandbox.sif import SifSandbox
from worker.settings import Settings
from worker.sif.client import SifClient

from .conftest import EMPRESA, SECRET, T0, MakeRows, attempts, later, notification

REPO_ROOT = Path(__file__).resolve().parents[2]


def _deliver(sessions: sessionmaker[Session], nid: str, client: SifClient, settings: Settings,
             seconds: float, owner: str = "w2") -> DeliveryOutcome:
    return deliver(sessions, nid, client=client, settings=settings, owner=owner, now=later(seconds))


def _commit_then_drop(sessions: sessionmaker[Session], nid: str, sif: SifSandbox,
                      client: SifClient, settings: Settings) -> str:
    sif.configure(faults=["drop"])
    first = _deliver(sessions, nid, client, settings, 0, "w1")
    assert (first.result, first.state, first.status_code) == ("retry_connection", N.RETRY_WAIT, None)
    [record] = sif.received()
    assert record["answered"] is False and record["code"] == 204  # SIF committed, never answered
    assert first.next_attempt_at is not None
    second = _deliver(sessions, nid, client, settings, (first.next_attempt_at - T0).total_seconds())
    assert second.state == N.DELIVERED
    row = notification(sessions, nid)
    assert row.state == "delivered" and row.attempts == 2
    assert [a.status_code for a in attempts(sessions, nid)] == [None, second.status_code]
    return second.result


def test_commit_then_drop_nok(sessions: sessionmaker[Session], add_nok: MakeRows, sif: SifSandbox,
                              client: SifClient, settings: Settings) -> None:
    _, nid = add_nok(reference="R-DROP")
    assert _commit_then_drop(sessions, nid, sif, client, settings) == "delivered"
    assert sif.statuses(EMPRESA, "R-DROP") == ["NOK", "NOK"]  # a NOK may be repeated


def test_commit_then_drop_ok(sessions: sessionmaker[Session], add_ok: Callable[..., tuple[str, str]],
                             stamped_cfdi: Callable[[str], bytes], sif: SifSandbox,
                             client: SifClient, settings: Settings) -> None:
    sat_uuid = str(uuid.uuid4()).upper()
    _, nid = add_ok(stamped_cfdi(sat_uuid), sat_uuid, reference="R-DROP-OK")
    assert _commit_then_drop(sessions, nid, sif, client, settings) == "already_held"
    assert sif.statuses(EMPRESA, "R-DROP-OK") == ["OK"]  # exactly one OK
    assert [r["code"] for r in sif.received()] == [204, 409]


def _killed_between_put_and_commit(db_url: str, sessions: sessionmaker[Session], nid: str,
                                   sif: SifSandbox, settings: Settings) -> None:
    """A child process claims and PUTs; SIF takes the status and holds its answer; the
    child is SIGKILLed before it can commit the outcome."""
    sif.configure(latency_s=60)
    env = {
        **os.environ,
        "BILLING_SIF_BASE_URL": sif.url,
        "BILLING_SIF_SECRET": SECRET,
        "BILLING_SIF_GENERATOR_ID": settings.sif_generator_id,
        "BILLING_CLAIM_LEASE_S": str(settings.claim_lease_s),
        "BILLING_SIF_READ_TIMEOUT_S": "120",
    }
    env.pop("BILLING_ENV_FILE", None)
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.sif.deliver_child", db_url, nid, "doomed", T0.isoformat()],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        if not sif.wait_for_requests(1, timeout_s=30):
            child.kill()
            _, err = child.communicate(timeout=10)
            pytest.fail(f"the child never reached SIF: {err.decode(errors='replace')}")
    finally:
        child.kill()
        child.wait(10)
    assert child.returncode == -9
    row = notification(sessions, nid)
    assert (row.state, row.lease_owner) == ("sending", "doomed")
    assert row.lease_expires_at == later(settings.claim_lease_s)
    assert attempts(sessions, nid) == []  # the answer was never recorded
    sif.configure(latency_s=0)


def _after_the_lease(sessions: sessionmaker[Session], nid: str, client: SifClient,
                     settings: Settings) -> DeliveryOutcome:
    lease = settings.claim_lease_s
    assert _deliver(sessions, nid, client, settings, lease - 1).result == "not_claimed"  # still leased
    with sessions() as s:
        assert nid not in due_notifications(s, later(lease - 1))
        assert nid in due_notifications(s, later(lease + 1))
    outcome = _deliver(sessions, nid, client, settings, lease + 1)
    assert outcome.state == N.DELIVERED
    row = notification(sessions, nid)
    assert (row.state, row.lease_owner, row.attempts) == ("delivered", None, 2)
    return outcome


def test_killed_between_put_and_commit_nok(db_url: str, sessions: sessionmaker[Session], add_nok: MakeRows,
                                           sif: SifSandbox, client: SifClient, settings: Settings) -> None:
    _, nid = add_nok(reference="R-KILL")
    _killed_between_put_and_commit(db_url, sessions, nid, sif, settings)
    outcome = _after_the_lease(sessions, nid, client, settings)
    assert (outcome.result, outcome.status_code) == ("delivered", 204)
    assert sif.statuses(EMPRESA, "R-KILL") == ["NOK", "NOK"]


def test_killed_between_put_and_commit_ok(db_url: str, sessions: sessionmaker[Session],
                                          add_ok: Callable[..., tuple[str, str]],
                                          stamped_cfdi: Callable[[str], bytes], sif: SifSandbox,
                                          client: SifClient, settings: Settings) -> None:
    sat_uuid = str(uuid.uuid4()).upper()
    _, nid = add_ok(stamped_cfdi(sat_uuid), sat_uuid, reference="R-KILL-OK")
    _killed_between_put_and_commit(db_url, sessions, nid, sif, settings)
    outcome = _after_the_lease(sessions, nid, client, settings)
    assert (outcome.result, outcome.status_code) == ("already_held", 409)
    assert sif.statuses(EMPRESA, "R-KILL-OK") == ["OK"]  # exactly one OK
    oks = [r for r in sif.received() if r["status"] == "OK"]
    assert [r["code"] for r in oks] == [204, 409]
    # The resend carries the same document. (The PDF is rendered again on each attempt, and
    # its bytes carry the render time, so only the XML and the data are compared.)
    first, again = ({k: v for k, v in r["body"].items() if k != "pdf"} for r in oks)
    assert first == again


def test_a_claim_without_a_put_is_also_recovered(sessions: sessionmaker[Session], add_nok: MakeRows,
                                                 sif: SifSandbox, client: SifClient,
                                                 settings: Settings) -> None:
    """A worker that died right after its claim (nothing sent) leaves the same trace."""
    _, nid = add_nok(reference="R-CLAIM")
    with sessions.begin() as s:
        assert claim_notification(s, nid, owner="died", lease_s=settings.claim_lease_s, now=T0)
    outcome = _after_the_lease(sessions, nid, client, settings)
    assert outcome.result == "delivered"
    assert sif.statuses(EMPRESA, "R-CLAIM") == ["NOK"]

