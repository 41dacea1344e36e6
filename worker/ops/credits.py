"""Finkok credits: ask ``report_credit`` for each RFC and keep the last reading in the
database (table ``finkok_credits``), for metrics, alerts and ``billing health``.

Which RFCs: ``BILLING_CREDITS_RFCS`` (comma-separated) or, when empty, the emisor RFCs of
the invoices created in the last ``RECENT_DAYS`` days (at most ``MAX_RFCS``). Finkok reports
a figure only for prepaid accounts; an on-demand account answers an empty list, stored as
``credits = None``. A failed call is stored as an ``error`` (the exception's class and its
text, which never carries the password) and the previous figure is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from worker.db.models import FinkokCredit, Invoice, utcnow
from worker.finkok.errors import FinkokError
from worker.finkok.results import ReportCreditResult
from worker.ops.heartbeats import POLL_CREDITS, beat, upsert
from worker.settings import Settings

RECENT_DAYS = 30
MAX_RFCS = 20


class CreditClient(Protocol):
    def report_credit(self, taxpayer_id: str) -> ReportCreditResult: ...


@dataclass(frozen=True)
class CreditReading:
    taxpayer_id: str
    credits: int | None  # None: not reported (on-demand account) or the call failed
    reported_at: str | None
    error: str | None


def rfcs_to_poll(session: Session, settings: Settings, now: datetime | None = None) -> list[str]:
    """The configured RFCs, else the recent emisor RFCs (see the module docstring)."""
    configured = settings.credits_rfc_list
    if configured:
        return configured
    since = (now or utcnow()) - timedelta(days=RECENT_DAYS)
    rows = session.scalars(
        select(Invoice.emisor_rfc).where(Invoice.created_at >= since)
        .group_by(Invoice.emisor_rfc).order_by(Invoice.emisor_rfc).limit(MAX_RFCS)
    )
    return [str(r).upper() for r in rows]


def read_credit(client: CreditClient, taxpayer_id: str) -> CreditReading:
    """One ``report_credit`` call as a reading; never raises for a Finkok failure."""
    try:
        result = client.report_credit(taxpayer_id)
    except FinkokError as exc:
        return CreditReading(taxpayer_id, None, None, f"{type(exc).__name__}: {exc}")
    if result.error:
        return CreditReading(taxpayer_id, None, None, f"Finkok: {result.error}")
    entries = [e for e in result.entries if e.credit is not None]
    if not entries:
        return CreditReading(taxpayer_id, None, None, None)
    latest = max(entries, key=lambda e: e.date or "")
    return CreditReading(taxpayer_id, latest.credit, latest.date, None)


def store(session: Session, reading: CreditReading, now: datetime) -> None:
    """Upsert one reading; a failed call keeps the previous figure and records the error."""
    values: dict[str, object] = {"taxpayer_id": reading.taxpayer_id, "polled_at": now,
                                 "error": reading.error}
    if reading.error is None:
        values |= {"credits": reading.credits, "reported_at": reading.reported_at}
    upsert(session, FinkokCredit.__table__, values, "taxpayer_id")


def poll_credits(sessions: sessionmaker[Session], client: CreditClient,
                 settings: Settings) -> list[CreditReading]:
    """Read and store the credits of every RFC to poll, then write the heartbeat.

    No transaction is open during the Finkok calls; the readings and the heartbeat are
    written together afterwards.
    """
    with sessions() as session:
        rfcs = rfcs_to_poll(session, settings)
    readings = [read_credit(client, rfc) for rfc in rfcs]
    now = utcnow()
    with sessions.begin() as session:
        for reading in readings:
            store(session, reading, now)
        beat(session, POLL_CREDITS, interval_s=settings.credits_poll_interval_s, at=now)
    return readings


def last_readings(session: Session) -> list[FinkokCredit]:
    """Every stored reading, by RFC."""
    return list(session.scalars(select(FinkokCredit).order_by(FinkokCredit.taxpayer_id)))
