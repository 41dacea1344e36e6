"""An outage is not a failed cancellation (issue 16), proven against the local Finkok over
HTTP, on SQLite and PostgreSQL.

Driven in-process the way the workers and the beat drive it: every due cancellation is
sent (``send_cancellation``) or polled (``poll_one``), then the sweeper's maintenance runs
(``maintain``: probes, bounded releases). The sandbox's ``outage`` switch stands for the
fault; its counters say how many cancel calls were made while a breaker was open. The
settings allow two sends per cancellation (``cancel_max_attempts=2``), so an outage that
used up attempts would show as ``cancel_failed`` at once.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from worker.cancellations.door import request_cancellation
from worker.cancellations.polling import due, poll_one
from worker.cancellations.sending import send_cancellation
from worker.cfdi.factory import build_invoice
from worker.db import breakers
from worker.db.models import Breaker, Cancellation, StampAttempt, utcnow
from worker.finkok.client import FinkokClient
from worker.invoices.holds import maintain
from worker.invoices.intake import submit
from worker.invoices.stamping import stamp_invoice
from worker.sandbox.finkok import FinkokSandbox
from worker.settings import Settings

PROBE_S = 0.2
FAST = {"breaker_probe_s": PROBE_S, "breaker_service_threshold": 2, "cancel_max_attempts": 2,
        "stamp_backoff_base_s": 0.05, "stamp_backoff_max_s": 0.2, "finkok_read_timeout_s": 1.0,
        "cancel_poll_base_s": 0.05, "cancel_poll_max_s": 0.2}


def _fast(settings: Settings) -> Settings:
    return settings.model_copy(update=FAST)


def _requested(sessions: sessionmaker[Session], client: FinkokClient, settings: Settings,
               n: int, prefix: str) -> dict[str, str]:
    """``n`` stamped invoices, each with a cancellation requested: {cancellation id: UUID}."""
    out = {}
    for i in range(n):
        invoice_id = submit(sessions, build_invoice(folio=f"{prefix}{i}"), empresa_ref_id="E1",
                            reference=f"{prefix}{i}").invoice_id
        stamped = stamp_invoice(sessions, client, settings, invoice_id, owner="w",
                                sleep=lambda _s: None)
        assert stamped.state == "stamped"
        req = request_cancellation(sessions, settings.cancel_csds, invoice_id, motivo="02",
                                   reason="test", actor="tester")
        assert req.cancellation_id
        out[req.cancellation_id] = str(stamped.detail)
    return out


def _drive(sessions: sessionmaker[Session], client: FinkokClient, settings: Settings,
           seconds: float, until: Callable[[], bool] | None = None) -> None:
    """What the workers and the beat do, for ``seconds`` (or until ``until()``)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not (until and until()):
        with sessions() as s:
            found = due(s, utcnow())
        for cid in found.to_send:
            send_cancellation(sessions, client, settings, cid, owner="w", rng=random.Random(1))
        for cid in found.to_poll:
            poll_one(sessions, client, settings, cid, worker="poller")
        with sessions.begin() as s:
            maintain(s, settings, utcnow())
        time.sleep(0.05)


def _states(sessions: sessionmaker[Session], ids: list[str]) -> dict[str, int]:
    with sessions() as s:
        rows = s.scalars(select(Cancellation.state).where(Cancellation.id.in_(ids))).all()
    counts: dict[str, int] = {}
    for state in rows:
        counts[state] = counts.get(state, 0) + 1
    return counts


def _cancel_calls(finkok: FinkokSandbox, operation: str | None = None) -> int:
    calls = finkok.stats()["calls"]
    return sum(int(n) for op, n in calls.items()
               if op.startswith("cancel.") and (operation is None or op == f"cancel.{operation}"))


def _one_request_each(finkok: FinkokSandbox, uuids: dict[str, str]) -> None:
    for uuid in uuids.values():
        rec = finkok.simulator.ledger.find_uuid(uuid)
        assert rec is not None and rec.cancel_requests == 1, uuid


def test_out_of_credits_holds_cancellations_then_each_is_cancelled_once(
    sessions: sessionmaker[Session], client: FinkokClient, settings: Settings,
    finkok: FinkokSandbox,
) -> None:
    """718 answers every cancellation: the account breaker opens on the first answer, every
    row waits in `held` (none cancel_failed, no attempt used), only probes call Finkok;
    credits back: each is cancelled, one request each at the sandbox."""
    from worker.ops.filters import InvoiceFilter
    from worker.ops.metrics import create_registry
    from worker.ops.queries import matching_ids
    from worker.ops.stats import compute_stats

    settings = _fast(settings)
    uuids = _requested(sessions, client, settings, 3, "cc")
    ids = list(uuids)
    finkok.configure(outage="718")
    _drive(sessions, client, settings, 1.0)
    states = _states(sessions, ids)
    assert set(states) <= {"held", "requested"} and states.get("held", 0) >= 2, states
    with sessions() as s:
        breaker = s.get(Breaker, breakers.ACCOUNT_KEY)
        assert breaker is not None and breaker.state in ("open", "half_open")
        assert breaker.cause and "out of credits" in breaker.cause
        rows = s.scalars(select(Cancellation).where(Cancellation.id.in_(ids))).all()
        assert max(r.attempts for r in rows) <= 1  # no attempt used while held
        held = [r for r in rows if r.state == "held"]
        assert {r.hold_key for r in held} == {breakers.ACCOUNT_KEY}
        assert held[0].errors and held[0].errors[0]["code"] == "718"
        # Seen where operators look: billing stats, breaker list, invoices list, metrics.
        stats = compute_stats(s)
        assert stats.cancellations["held"] == len(held)
        assert [b["held_cancellations"] for b in stats.breakers
                if b["key"] == breakers.ACCOUNT_KEY] == [len(held)]
        assert len(matching_ids(s, InvoiceFilter(cancel_states=("held",)))) == len(held)
    value = create_registry(sessions.kw["bind"]).get_sample_value
    assert value("billing_cancellations", {"state": "held"}) == len(held)
    assert value("billing_held", {"kind": "cancellation", "breaker": breakers.ACCOUNT_KEY}) \
        == len(held)
    # The first answer opened the breaker; after it, only probes (one per probe interval).
    requests_in_outage = _cancel_calls(finkok, "cancel_signature")
    assert 1 <= requests_in_outage <= 1 + 1.0 / PROBE_S, requests_in_outage
    assert _cancel_calls(finkok) == requests_in_outage  # and no lookup

    finkok.configure(outage=None)
    _drive(sessions, client, settings, 20, lambda: _states(sessions, ids) == {"cancelled": 3})
    assert _states(sessions, ids) == {"cancelled": 3}
    _one_request_each(finkok, uuids)
    with sessions() as s:
        assert s.get(Breaker, breakers.ACCOUNT_KEY).state == "closed"  # type: ignore[union-attr]


def test_dropped_connections_hold_cancellations_and_resume_with_one_request_each(
    sessions: sessionmaker[Session], client: FinkokClient, settings: Settings,
    finkok: FinkokSandbox,
) -> None:
    """Every connection dropped unanswered: two service failures in a row open the service
    breaker; the rows wait in `held`, must-check (a dropped request may have reached SAT),
    never cancel_failed though each had only two sends to use. Finkok back: each asks
    get_receipt/get_sat_status first, sends once, and ends cancelled."""
    settings = _fast(settings)
    uuids = _requested(sessions, client, settings, 3, "cd")
    ids = list(uuids)
    finkok.configure(outage="drop")
    _drive(sessions, client, settings, 1.0)
    states = _states(sessions, ids)  # (a probe releases one held row at a time)
    assert set(states) <= {"held", "requested"} and states.get("held", 0) >= 1, states
    with sessions() as s:
        assert s.get(Breaker, breakers.SERVICE_KEY).state != "closed"  # type: ignore[union-attr]
        rows = s.scalars(select(Cancellation).where(Cancellation.id.in_(ids))).all()
        assert max(r.attempts for r in rows) <= 1
        for r in rows:  # a request that went out unanswered is must-check; a held one sent none
            sent = s.scalars(select(StampAttempt.id).where(
                StampAttempt.invoice_id == r.invoice_id,
                StampAttempt.operation == "cancel_signature")).first()
            assert r.must_check is (sent is not None), r.state
    # One call per row until the breaker opened (the threshold), then only probes.
    calls_in_outage = _cancel_calls(finkok)
    assert calls_in_outage <= FAST["breaker_service_threshold"] + 1.0 / PROBE_S, calls_in_outage

    finkok.configure(outage=None)
    _drive(sessions, client, settings, 20, lambda: _states(sessions, ids) == {"cancelled": 3})
    assert _states(sessions, ids) == {"cancelled": 3}
    _one_request_each(finkok, uuids)


def test_a_cancellation_claimed_behind_an_open_breaker_makes_no_call(
    sessions: sessionmaker[Session], client: FinkokClient, settings: Settings,
    finkok: FinkokSandbox,
) -> None:
    settings = _fast(settings)
    [cid] = _requested(sessions, client, settings, 1, "cb")
    with sessions.begin() as s:  # opened by stamping, say (an emisor fault at Finkok)
        breakers.open_(s, breakers.emisor_key("AAA010101AAA"), code="702",
                       cause="702: the emisor RFC is not registered in the Finkok account",
                       probe_after_s=3600)
    out = send_cancellation(sessions, client, settings, cid, owner="w")
    assert (out.state, out.detail) == ("held", "702")
    assert _cancel_calls(finkok) == 0
    with sessions() as s:
        row = s.get(Cancellation, cid)
        assert row is not None and (row.hold_key, row.attempts) == (
            breakers.emisor_key("AAA010101AAA"), 0)
    with sessions.begin() as s:  # the RFC got registered: `billing breaker reset`
        breakers.reset(s, breakers.emisor_key("AAA010101AAA"), actor="t", reason="fixed")
    with sessions.begin() as s:
        assert maintain(s, settings, utcnow()).released_cancellations == [cid]
    assert send_cancellation(sessions, client, settings, cid, owner="w").state == "in_process"


def test_the_poller_waits_out_an_outage_and_never_settles_on_it(
    sessions: sessionmaker[Session], client: FinkokClient, settings: Settings,
    finkok: FinkokSandbox,
) -> None:
    """An in_process row whose get_sat_status fails stays in_process (asked again after its
    pause), the failure counts on the service breaker, and while the breaker is open the
    poller makes no call; once it closes, SAT's answer settles it."""
    settings = _fast(settings).model_copy(update={"cancel_poll_base_s": 30.0})
    finkok.configure(cancel_process_polls=1)
    [cid] = _requested(sessions, client, settings, 1, "cp")
    assert send_cancellation(sessions, client, settings, cid, owner="w").state == "in_process"

    def poll() -> str:
        with sessions.begin() as s:
            s.execute(update(Cancellation).where(Cancellation.id == cid)
                      .values(next_attempt_at=utcnow() - timedelta(seconds=1)))
        return poll_one(sessions, client, settings, cid, worker="poller")

    finkok.configure(outage="http503")
    calls = _cancel_calls(finkok)
    for _ in range(2):  # two failures in a row: the service breaker opens
        assert poll() == "in_process"
    with sessions() as s:
        row = s.get(Cancellation, cid)
        assert row is not None and row.errors and row.errors[0]["kind"] == "outage"
        assert row.next_attempt_at is not None and row.next_attempt_at > utcnow()  # backoff
        assert s.get(Breaker, breakers.SERVICE_KEY).state == "open"  # type: ignore[union-attr]
    assert _cancel_calls(finkok) == calls + 2
    assert poll() == "in_process"  # breaker open: no call at all
    assert _cancel_calls(finkok) == calls + 2
    finkok.configure(outage=None)
    with sessions.begin() as s:
        breakers.reset(s, breakers.SERVICE_KEY, actor="t", reason="Finkok is back")
    assert [poll(), poll()] == ["in_process", "cancelled"]  # En proceso once, then Cancelado


def test_refusals_of_the_request_still_end_cancel_failed(
    sessions: sessionmaker[Session], client: FinkokClient, settings: Settings,
    finkok: FinkokSandbox,
) -> None:
    """Negative control: what the request itself draws stays the document's. SAT not
    knowing the UUID ("No Encontrado") uses the two sends and ends cancel_failed; no
    breaker opens, nothing is held."""
    settings = _fast(settings)
    [cid] = _requested(sessions, client, settings, 1, "cr")
    with sessions.begin() as s:  # a UUID SAT has never seen
        s.execute(update(Cancellation).where(Cancellation.id == cid)
                  .values(sat_uuid="0D3C1E2A-1111-4222-8333-444455550000"))
    _drive(sessions, client, settings, 5, lambda: _states(sessions, [cid]) == {"cancel_failed": 1})
    assert _states(sessions, [cid]) == {"cancel_failed": 1}
    with sessions() as s:
        row = s.get(Cancellation, cid)
        assert row is not None and row.attempts == 2 and row.hold_key is None
        assert row.errors and row.errors[0]["code"] == "205"
        assert all(b.state == "closed" for b in s.scalars(select(Breaker)))
    assert _cancel_calls(finkok, "cancel_signature") == 2
