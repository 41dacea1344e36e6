"""An outage is not a rejection (issue 11), proven against the real sandboxes over HTTP.

The pipeline is driven in-process the way the workers and the beat drive it: every due
invoice is stamped (``stamp_invoice``), then the sweeper's maintenance runs (``maintain``:
probes, releases, SAT's window). The Finkok sandbox's ``outage`` switch stands for the
fault; its counters say how many stamp calls were made while a breaker was open.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session, sessionmaker

from worker.cfdi.csd import generate_csd
from worker.cfdi.factory import build_invoice, mexico_city_now
from worker.db import breakers
from worker.db.models import Breaker, Invoice, Notification, utcnow
from worker.finkok.client import FinkokClient
from worker.invoices.holds import maintain
from worker.invoices.intake import submit
from worker.invoices.stamping import claim, settle, stamp_invoice, talk_to_finkok
from worker.invoices.sweep import due_invoices
from worker.sandbox.finkok import FinkokSandbox
from worker.settings import Settings

FAST = {"breaker_probe_s": 0.3, "breaker_service_threshold": 3, "stamp_max_attempts": 4,
        "stamp_backoff_base_s": 0.05, "stamp_backoff_max_s": 0.2, "finkok_read_timeout_s": 1.0}


def _fast(settings: Settings) -> Settings:
    return settings.model_copy(update=FAST)


def _submit(sessions: sessionmaker[Session], n: int, prefix: str, **kw: object) -> list[str]:
    return [submit(sessions, build_invoice(folio=f"{prefix}{i}", **kw),  # type: ignore[arg-type]
                   empresa_ref_id="E1", reference=f"{prefix}{i}").invoice_id for i in range(n)]


def _drive(sessions: sessionmaker[Session], client: FinkokClient, settings: Settings,
           seconds: float, until: Callable[[], bool] | None = None) -> None:
    """What the workers and the beat do, for ``seconds`` (or until ``until()``)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not (until and until()):
        with sessions() as s:
            due = due_invoices(s, utcnow(), grace_s=0)
        for invoice_id in due:
            stamp_invoice(sessions, client, settings, invoice_id, owner="w", sleep=lambda _: None)
        with sessions.begin() as s:
            maintain(s, settings, utcnow())
        time.sleep(0.05)


def _states(sessions: sessionmaker[Session], ids: list[str]) -> dict[str, int]:
    with sessions() as s:
        rows = s.scalars(select(Invoice.state).where(Invoice.id.in_(ids))).all()
    counts: dict[str, int] = {}
    for state in rows:
        counts[state] = counts.get(state, 0) + 1
    return counts


def _waiting(states: dict[str, int], n: int) -> bool:
    """Every invoice waits (held, or the one a probe just released), none settled."""
    return set(states) <= {"held", "retry_wait"} and states.get("held", 0) >= n - 1 \
        and sum(states.values()) == n


def _noks(sessions: sessionmaker[Session]) -> int:
    with sessions() as s:
        return len(s.scalars(select(Notification.id).where(Notification.status == "NOK")).all())


def _stamp_calls(finkok: FinkokSandbox) -> int:
    return int(finkok.stats()["calls"].get("stamp.stamp", 0))


def test_out_of_credits_holds_everything_then_all_stamp_with_zero_noks(
    sessions: sessionmaker[Session], client: FinkokClient, settings: Settings,
    finkok: FinkokSandbox,
) -> None:
    settings = _fast(settings)
    finkok.configure(outage="718")
    ids = _submit(sessions, 6, "c")
    _drive(sessions, client, settings, 1.5)
    assert _waiting(_states(sessions, ids), 6), _states(sessions, ids)
    with sessions() as s:
        breaker = s.get(Breaker, breakers.ACCOUNT_KEY)
        assert breaker is not None and breaker.state in ("open", "half_open")
        assert breaker.cause and "out of credits" in breaker.cause
        attempts = s.scalars(select(Invoice.attempts).where(Invoice.id.in_(ids))).all()
        assert max(attempts) <= 1  # no attempt burned while held (a released probe: 1)
    calls_in_outage = _stamp_calls(finkok)
    # The first call opened the breaker; after it, only probes (one per probe interval).
    probes = 1.5 / FAST["breaker_probe_s"]
    assert calls_in_outage <= 1 + probes, calls_in_outage

    finkok.configure(outage=None)
    _drive(sessions, client, settings, 20, lambda: _states(sessions, ids) == {"stamped": 6})
    assert _states(sessions, ids) == {"stamped": 6}
    assert _noks(sessions) == 0
    assert finkok.stats()["totals"]["new_stamps"] == 6


def test_an_emisor_fault_holds_only_that_emisor(
    sessions: sessionmaker[Session], client: FinkokClient, settings: Settings,
    finkok: FinkokSandbox,
) -> None:
    settings = _fast(settings)
    other = generate_csd("OTR010101AB1", "OTRO EMISOR", no_certificado="30001000000500003421",
                         key_size=1024)
    finkok.configure(rules={"OTR010101AB1": "account:702"})
    theirs = _submit(sessions, 3, "o", emisor=other)
    ours = _submit(sessions, 3, "u")
    _drive(sessions, client, settings, 10, lambda: _states(sessions, ours) == {"stamped": 3})
    assert _states(sessions, ours) == {"stamped": 3}
    assert _waiting(_states(sessions, theirs), 3), _states(sessions, theirs)
    with sessions() as s:
        assert s.get(Breaker, breakers.emisor_key("OTR010101AB1")).state != "closed"  # type: ignore[union-attr]
        account = s.get(Breaker, breakers.ACCOUNT_KEY)
        assert account is None or account.state == "closed"
    assert _noks(sessions) == 0

    finkok.configure(rules={})  # the RFC got registered in the account
    _drive(sessions, client, settings, 20, lambda: _states(sessions, theirs) == {"stamped": 3})
    assert _states(sessions, theirs) == {"stamped": 3}
    assert _noks(sessions) == 0


def test_an_sat_outage_longer_than_the_attempt_budget_ends_stamped(
    sessions: sessionmaker[Session], client: FinkokClient, settings: Settings,
    finkok: FinkokSandbox,
) -> None:
    """708 for longer than 4 attempts would have lasted: the service breaker opens after 3
    failures in a row and the rest wait; nothing is NOKed, everything stamps after."""
    settings = _fast(settings)
    finkok.configure(outage="708")
    ids = _submit(sessions, 5, "s")
    _drive(sessions, client, settings, 3.0)
    states = _states(sessions, ids)
    assert "failed" not in states and "rejected" not in states, states
    with sessions() as s:
        assert s.get(Breaker, breakers.SERVICE_KEY).state != "closed"  # type: ignore[union-attr]

    finkok.configure(outage=None)
    _drive(sessions, client, settings, 30, lambda: _states(sessions, ids) == {"stamped": 5})
    assert _states(sessions, ids) == {"stamped": 5}
    assert _noks(sessions) == 0


def test_a_proxy_answering_404_holds_without_a_nok(
    sessions: sessionmaker[Session], client: FinkokClient, settings: Settings,
    finkok: FinkokSandbox,
) -> None:
    settings = _fast(settings)
    finkok.configure(outage="http404")
    ids = _submit(sessions, 2, "p")
    _drive(sessions, client, settings, 1.0)
    assert _waiting(_states(sessions, ids), 2), _states(sessions, ids)
    finkok.configure(outage=None)
    _drive(sessions, client, settings, 20, lambda: _states(sessions, ids) == {"stamped": 2})
    assert _states(sessions, ids) == {"stamped": 2} and _noks(sessions) == 0


def test_a_held_invoice_fails_with_the_named_nok_when_sats_window_closes(
    sessions: sessionmaker[Session], client: FinkokClient, settings: Settings,
    finkok: FinkokSandbox,
) -> None:
    # No probe due within the days the clock jumps (a probe would release the row).
    settings = _fast(settings).model_copy(update={"breaker_probe_s": 10 * 86400.0})
    finkok.configure(outage="718")
    [invoice_id] = _submit(sessions, 1, "w")
    _drive(sessions, client, settings, 0.5)
    assert _states(sessions, [invoice_id]) == {"held": 1}
    with sessions() as s:
        deadline = s.get(Invoice, invoice_id).stamp_deadline_at  # type: ignore[union-attr]
    assert deadline is not None
    margin = timedelta(seconds=settings.sat_window_margin_s)
    with sessions.begin() as s:  # negative control: a minute before the margin, nothing
        assert maintain(s, settings, deadline - margin - timedelta(minutes=1)).expired == []
    with sessions.begin() as s:  # the clock reaches the margin
        done = maintain(s, settings, deadline - margin)
    assert done.expired == [invoice_id] and len(done.notifications) == 1
    with sessions() as s:
        row = s.get(Invoice, invoice_id)
        assert row is not None and (row.state, row.error_kind) == ("failed", "window")
        assert row.errors and "72-hour window" in row.errors[0]["message"]
        assert "--replace-xml" in row.errors[0]["message"]
        assert [n.status for n in row.notifications] == ["NOK"]


def test_a_document_past_the_window_is_not_sent_to_finkok(
    sessions: sessionmaker[Session], client: FinkokClient, settings: Settings,
    finkok: FinkokSandbox,
) -> None:
    """Fecha 71.5 hours ago with a 1-hour margin: the window is closing, no stamp call."""
    settings = _fast(settings)
    old = mexico_city_now() - timedelta(hours=71, minutes=30)
    [invoice_id] = _submit(sessions, 1, "late", fecha=old)
    stamp_invoice(sessions, client, settings, invoice_id, owner="w")
    with sessions() as s:
        row = s.get(Invoice, invoice_id)
        assert row is not None and (row.state, row.error_kind) == ("failed", "window")
        assert [n.status for n in row.notifications] == ["NOK"]
    assert _stamp_calls(finkok) == 0


def test_quiet_breakers_cost_no_statement_and_a_success_resets_only_what_its_claim_saw(
    engine: Engine, sessions: sessionmaker[Session], client: FinkokClient, settings: Settings,
    finkok: FinkokSandbox,
) -> None:
    """Every breaker closed, no failure counted: a stamp neither reads nor writes the
    breakers (its claim says so). A counted failure: the next stamp's claim sees it, and its
    success resets it. A failure counted while a call is in flight is not that call's to
    reset: the next claim sees it (breakers.QUIET)."""
    seen: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.lstrip().startswith(("UPDATE breakers", "SELECT breakers")):
            seen.append(statement.split(maxsplit=1)[0])
    event.listen(engine, "after_cursor_execute", record)
    first, second, third, fourth = _submit(sessions, 4, "q")

    def count_a_failure() -> None:
        with sessions.begin() as s:  # another worker's timeout
            breakers.note_failure(s, breakers.SERVICE_KEY, code="timeout", cause="timeout",
                                  threshold=5, window_s=60, probe_after_s=1)

    def failures() -> int:
        with sessions() as s:
            breaker = s.get(Breaker, breakers.SERVICE_KEY)
            return -1 if breaker is None else breaker.failures

    assert stamp_invoice(sessions, client, settings, first, owner="w").state == "stamped"
    assert seen == []

    count_a_failure()
    assert stamp_invoice(sessions, client, settings, second, owner="w").state == "stamped"
    assert "SELECT" in seen and "UPDATE" in seen  # read at the claim, reset at the settle
    assert failures() == 0

    job = claim(sessions, third, owner="w", settings=settings)  # quiet at its claim
    assert job is not None and job.breakers_quiet
    count_a_failure()  # lands while the call is in flight
    verdict = talk_to_finkok(client, job, calls := [], settings=settings, sleep=lambda _: None)
    assert settle(sessions, job, verdict, calls, owner="w", settings=settings).state == "stamped"
    assert failures() == 1
    assert stamp_invoice(sessions, client, settings, fourth, owner="w").state == "stamped"
    assert failures() == 0
