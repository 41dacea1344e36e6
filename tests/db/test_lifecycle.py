"""The lifecycle: compare-and-set claims, fenced moves and due queries, on SQLite and
PostgreSQL, and every claim/due predicate checked against the edge tables for every state."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from worker.db.lifecycle import (
    claim_cancellation,
    claim_invoice_for_stamp,
    claim_notification,
    due_where,
    move,
)
from worker.db.models import Cancellation, Invoice, Notification, utcnow
from worker.db.states import (
    CANCELLATION_CLAIM,
    CANCELLATION_EDGES,
    CANCELLATION_POLL,
    INVOICE_CLAIM,
    INVOICE_EDGES,
    NOTIFICATION_CLAIM,
    NOTIFICATION_EDGES,
    SAT_POLL,
    CancellationState,
    Edge,
    InvoiceState,
    NotificationState,
    can,
)

E = INVOICE_EDGES


def claim_invoice(s: Session, invoice_id: str, **how: object) -> bool:
    return claim_invoice_for_stamp(s, invoice_id, **how) is not None  # type: ignore[arg-type]


def _invoice(sessions: sessionmaker[Session], **kw: object) -> str:
    with sessions.begin() as s:
        inv = Invoice(
            empresa_ref_id="E1", reference=str(kw.pop("reference", "R1")), xml=b"<x/>",
            xml_sha256="0" * 64, emisor_rfc="AAA010101AAA", receptor_rfc="XAXX010101000",
            total="116.00", **kw,
        )
        s.add(inv)
        s.flush()
        return inv.id


def test_only_one_of_many_concurrent_claimers_wins(engine: Engine, sessions: sessionmaker[Session]) -> None:
    ids = [_invoice(sessions, reference=f"R{i}") for i in range(20)]
    wins: list[tuple[str, str]] = []
    barrier = threading.Barrier(8)

    def claimer(name: str) -> None:
        barrier.wait()
        for invoice_id in ids:
            with sessions.begin() as s:
                if claim_invoice(s, invoice_id, owner=name, lease_s=60):
                    wins.append((invoice_id, name))

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(w[0] for w in wins) == sorted(ids)  # each claimed exactly once
    with sessions() as s:
        rows = s.scalars(select(Invoice)).all()
    assert {r.state for r in rows} == {InvoiceState.STAMPING}
    assert {r.attempts for r in rows} == {1}


def test_expired_lease_is_taken_over_and_old_owner_is_fenced(sessions: sessionmaker[Session]) -> None:
    invoice_id = _invoice(sessions)
    t0 = utcnow()
    with sessions.begin() as s:
        assert claim_invoice(s, invoice_id, owner="old", lease_s=30, now=t0)
    with sessions.begin() as s:  # lease still live: nobody else gets it
        assert not claim_invoice(s, invoice_id, owner="new", lease_s=30, now=t0 + timedelta(seconds=10))
    with sessions.begin() as s:  # expired: taken over
        assert claim_invoice(s, invoice_id, owner="new", lease_s=30, now=t0 + timedelta(seconds=31))
    with sessions.begin() as s:  # the old owner's late answer cannot overwrite
        assert not move(s, E["stamped"], invoice_id, owner="old", sat_uuid="U-old")
    with sessions.begin() as s:
        assert move(s, E["stamped"], invoice_id, owner="new", sat_uuid="U-new")
    with sessions() as s:
        inv = s.get(Invoice, invoice_id)
        assert inv is not None
        assert (inv.state, inv.sat_uuid, inv.attempts, inv.lease_owner) == ("stamped", "U-new", 2, None)


def test_not_due_and_settled_rows_are_not_claimed(sessions: sessionmaker[Session]) -> None:
    later = utcnow() + timedelta(minutes=5)
    waiting = _invoice(sessions, reference="wait", state=InvoiceState.RETRY_WAIT, next_attempt_at=later)
    done = _invoice(sessions, reference="done", state=InvoiceState.STAMPED)
    with sessions.begin() as s:
        assert not claim_invoice(s, waiting, owner="w", lease_s=30)
        assert not claim_invoice(s, done, owner="w", lease_s=30)
        assert claim_invoice(s, waiting, owner="w", lease_s=30, now=later + timedelta(seconds=1))


def test_illegal_transition_changes_nothing(sessions: sessionmaker[Session]) -> None:
    invoice_id = _invoice(sessions, state=InvoiceState.STAMPED)
    with sessions.begin() as s:
        assert not move(s, E["reprocess"], invoice_id)
        assert not move(s, E["rejected"], invoice_id, owner="anyone")
    with sessions() as s:
        assert s.get(Invoice, invoice_id).state == InvoiceState.STAMPED  # type: ignore[union-attr]


def test_datetimes_come_back_timezone_aware_utc(sessions: sessionmaker[Session]) -> None:
    invoice_id = _invoice(sessions)
    with sessions() as s:
        inv = s.get(Invoice, invoice_id)
        assert inv is not None
        assert inv.created_at.tzinfo is not None and inv.created_at.utcoffset() == timedelta(0)
        assert inv.next_attempt_at is not None and inv.next_attempt_at.tzinfo is not None


def test_stamp_claim_returns_the_job_and_flags_a_takeover(sessions: sessionmaker[Session]) -> None:
    """One statement claims and returns the XML; `must_check_stamped` comes back set when
    the claim takes over a `stamping` row (its holder's call may have stamped)."""
    fresh, waiting = _invoice(sessions, reference="F"), _invoice(sessions, reference="W")
    t0 = utcnow()
    with sessions.begin() as s:
        s.get(Invoice, waiting).state = InvoiceState.RETRY_WAIT  # type: ignore[union-attr]
        s.get(Invoice, waiting).must_check_stamped = True  # type: ignore[union-attr]
    with sessions.begin() as s:
        row = claim_invoice_for_stamp(s, fresh, owner="w1", lease_s=30, now=t0)
        assert row is not None
        assert (row.xml, row.attempts, row.must_check_stamped, row.reference) == (b"<x/>", 1, False, "F")
        again = claim_invoice_for_stamp(s, waiting, owner="w1", lease_s=30, now=t0)
        assert again is not None and again.must_check_stamped  # kept from the ambiguous try
    with sessions.begin() as s:  # lease live: nothing
        assert claim_invoice_for_stamp(s, fresh, owner="w2", lease_s=30,
                                       now=t0 + timedelta(seconds=10)) is None
    with sessions.begin() as s:  # the holder died mid-call
        taken = claim_invoice_for_stamp(s, fresh, owner="w2", lease_s=30,
                                        now=t0 + timedelta(seconds=31))
        assert taken is not None and taken.must_check_stamped and taken.attempts == 2
    with sessions() as s:
        row2 = s.get(Invoice, fresh)
        assert row2 is not None and (row2.lease_owner, row2.must_check_stamped) == ("w2", True)


# --- the tables decide: every state against every claim, due query and move ------------------

PAST, FUTURE = timedelta(seconds=-60), timedelta(seconds=60)


def _expected_due(edges: tuple[Edge, ...], state: str, next_in: timedelta, lease_in: timedelta) -> bool:
    """What the table says, written independently of the SQL: a row is due for an edge when
    its state is a source and the edge's due rule holds."""
    for edge in edges:
        if state not in edge.sources:
            continue
        if edge.due == "next_attempt" and next_in <= timedelta(0):
            return True
        if edge.due == "lease_expired" and lease_in < timedelta(0):
            return True
    return False


@pytest.mark.parametrize("state", list(InvoiceState))
@pytest.mark.parametrize("next_in", [PAST, FUTURE], ids=["next-past", "next-future"])
@pytest.mark.parametrize("lease_in", [PAST, FUTURE], ids=["lease-expired", "lease-live"])
def test_invoice_claim_and_due_queries_follow_the_edges(
    sessions: sessionmaker[Session], state: InvoiceState, next_in: timedelta, lease_in: timedelta
) -> None:
    from worker.invoices.pending import due_pending
    from worker.invoices.sweep import due_invoices

    now = utcnow()
    invoice_id = _invoice(sessions, state=state, next_attempt_at=now + next_in,
                          lease_owner="someone", lease_expires_at=now + lease_in)
    claimable = _expected_due(INVOICE_CLAIM, state, next_in, lease_in)
    with sessions() as s:
        rows = set(s.scalars(select(Invoice.id).where(due_where(Invoice, INVOICE_CLAIM, now))))
        assert (invoice_id in rows) is claimable
        # The sweeper rings what a claim would take (grace 0: no fresh intake doorbell).
        assert (invoice_id in due_invoices(s, now, grace_s=0)) is claimable
        assert (invoice_id in due_pending(s, now)) is _expected_due(SAT_POLL, state, next_in, lease_in)
    with sessions.begin() as s:
        assert claim_invoice(s, invoice_id, owner="me", lease_s=30, now=now) is claimable


@pytest.mark.parametrize("state", list(NotificationState))
@pytest.mark.parametrize("next_in", [PAST, FUTURE], ids=["next-past", "next-future"])
@pytest.mark.parametrize("lease_in", [PAST, FUTURE], ids=["lease-expired", "lease-live"])
def test_notification_claim_and_due_query_follow_the_edges(
    sessions: sessionmaker[Session], state: NotificationState, next_in: timedelta,
    lease_in: timedelta,
) -> None:
    from worker.invoices.sweep import due_notifications

    now = utcnow()
    invoice_id = _invoice(sessions)
    with sessions.begin() as s:
        n = Notification(invoice_id=invoice_id, status="OK", state=state,
                         next_attempt_at=now + next_in, lease_owner="someone",
                         lease_expires_at=now + lease_in)
        s.add(n)
        s.flush()
        nid = n.id
    claimable = _expected_due(NOTIFICATION_CLAIM, state, next_in, lease_in)
    with sessions() as s:
        assert (nid in due_notifications(s, now)) is claimable
    with sessions.begin() as s:
        assert claim_notification(s, nid, owner="me", lease_s=30, now=now) is claimable


def _cancellation(sessions: sessionmaker[Session], invoice_id: str, **kw: object) -> str:
    with sessions.begin() as s:
        row = Cancellation(invoice_id=invoice_id, sat_uuid="0D3C1E2A-1111-4222-8333-444455556666",
                           emisor_rfc="AAA010101AAA", receptor_rfc="XAXX010101000",
                           total="116.00", motivo="02", must_check=False, **kw)
        s.add(row)
        s.flush()
        return row.id


@pytest.mark.parametrize("state", list(CancellationState))
def test_cancellation_claim_and_due_queries_follow_the_edges(
    sessions: sessionmaker[Session], state: CancellationState,
) -> None:
    """The poller sends what a claim would take and polls what the SAT poll edges take; a
    held cancellation is neither (only the sweeper's release moves it). Each due/lease
    combination on its own row (one test per state: cheap)."""
    from worker.cancellations.polling import due

    now = utcnow()
    for next_in in (PAST, FUTURE):
        for lease_in in (PAST, FUTURE):
            cid = _cancellation(sessions, _invoice(sessions, reference=f"{next_in}{lease_in}"),
                                state=state, next_attempt_at=now + next_in,
                                lease_owner="someone", lease_expires_at=now + lease_in)
            claimable = _expected_due(CANCELLATION_CLAIM, state, next_in, lease_in)
            polled = _expected_due(CANCELLATION_POLL, state, next_in, lease_in)
            with sessions() as s:
                found = due(s, now)
                assert ((cid in found.to_send), (cid in found.to_poll)) == (claimable, polled)
            with sessions.begin() as s:
                claimed = claim_cancellation(s, cid, owner="me", lease_s=30, now=now)
                assert (claimed is not None) is claimable


def test_edges_are_their_own_tables() -> None:
    """Same-shaped edges of two tables (a notification's and a cancellation's ``hold``, both
    sending -> held) are distinct: a statement built for one never serves the other."""
    tables = (INVOICE_EDGES, NOTIFICATION_EDGES, CANCELLATION_EDGES)
    every = [e for t in tables for e in t.values()]
    assert len(set(every)) == len(every)
    assert NOTIFICATION_EDGES["hold"] != CANCELLATION_EDGES["hold"]


_STATES: dict[int, type[InvoiceState] | type[NotificationState] | type[CancellationState]] = {
    id(INVOICE_EDGES): InvoiceState, id(NOTIFICATION_EDGES): NotificationState,
    id(CANCELLATION_EDGES): CancellationState}


def _moves() -> list[tuple[Edge, str]]:
    return [(e, state) for edges in (INVOICE_EDGES, NOTIFICATION_EDGES, CANCELLATION_EDGES)
            for e in edges.values() if e not in INVOICE_CLAIM + NOTIFICATION_CLAIM + CANCELLATION_CLAIM
            for state in _STATES[id(edges)]]


@pytest.mark.parametrize(("edge", "state"), _moves(),
                         ids=[f"{e.name}-from-{s}" for e, s in _moves()])
def test_every_move_applies_exactly_from_its_sources(
    sessions: sessionmaker[Session], edge: Edge, state: str
) -> None:
    invoice_id = _invoice(sessions, state=state if edge.name in E and E[edge.name] is edge
                          else InvoiceState.STAMPED, lease_owner="me")
    row_id = invoice_id
    model: type[Invoice] | type[Notification] | type[Cancellation] = Invoice
    if CANCELLATION_EDGES.get(edge.name) is edge:
        model = Cancellation
        row_id = _cancellation(sessions, invoice_id, state=state, lease_owner="me")
    if NOTIFICATION_EDGES.get(edge.name) is edge:
        model = Notification
        with sessions.begin() as s:
            n = Notification(invoice_id=invoice_id, status="OK", state=state, lease_owner="me")
            s.add(n)
            s.flush()
            row_id = n.id
    with sessions.begin() as s:
        if edge.fenced:
            with pytest.raises(TypeError, match="fenced"):
                move(s, edge, row_id)
            assert not move(s, edge, row_id, owner="not-me")  # negative control: not our lease
        moved = move(s, edge, row_id, owner="me" if edge.fenced else None)
        assert moved is can(edge, state)
    with sessions() as s:
        row = s.get(model, row_id)
        assert row is not None
        assert row.state == (edge.target if moved else state)


def test_claims_are_not_moves(sessions: sessionmaker[Session]) -> None:
    invoice_id = _invoice(sessions)
    with sessions.begin() as s:
        for edge in INVOICE_CLAIM:
            with pytest.raises(TypeError, match="claim"):
                move(s, edge, invoice_id)
