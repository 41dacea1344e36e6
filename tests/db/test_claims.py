"""Compare-and-set claims and fenced transitions, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from worker.db.claims import claim_invoice, transition_invoice
from worker.db.models import Invoice, utcnow
from worker.invoices.states import InvoiceState


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
        assert not transition_invoice(s, invoice_id, InvoiceState.STAMPED, owner="old", sat_uuid="U-old")
    with sessions.begin() as s:
        assert transition_invoice(s, invoice_id, InvoiceState.STAMPED, owner="new", sat_uuid="U-new")
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
        assert not transition_invoice(s, invoice_id, InvoiceState.RECEIVED)
        assert not transition_invoice(s, invoice_id, InvoiceState.REJECTED)
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
    from worker.db.claims import claim_invoice_for_stamp

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
