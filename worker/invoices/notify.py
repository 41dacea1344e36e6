"""Outbox delivery to SIF: plain functions over a session factory and a SifClient.

``deliver`` runs two short transactions and never holds one open across the PUT:

1. claim the row (queued|retry_wait due, or sending with an expired lease -> sending) and
   read it with its invoice (then build and validate the body, no transaction);
2. after the PUT: record a DeliveryAttempt and settle the row, fenced by the lease owner.

A crash between the PUT and step 2 leaves the row ``sending`` with a lease; once the
lease expires the sweeper finds it (``worker.invoices.sweep``) and it is sent again. SIF
answers that resend 204 (it took the same status again) or 409 (it already holds the
OK): both settle the row as delivered, and SIF holds one OK.
"""

from __future__ import annotations

import hashlib
import logging
import random
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, bindparam, func, insert, not_, or_, select
from sqlalchemy.orm import Session, sessionmaker
from structlog.contextvars import bind_contextvars

from worker import doorbell
from worker.db import breakers
from worker.db.lifecycle import claim_notification, move, settle_edge
from worker.db.models import AuditLog, DeliveryAttempt, Invoice, Notification, as_utc, utcnow
from worker.db.session import session_factory
from worker.db.states import NOTIFICATION_EDGES, NotificationState
from worker.doorbell import Ring
from worker.redaction import redact
from worker.settings import Settings
from worker.sif.client import (
    SifClient,
    SifConfigError,
    SifTimeout,
    SifTransportError,
    resolve_target,
)
from worker.sif.payload import PayloadError, body_for
from worker.sif.policy import CONNECTION, TIMEOUT, decide, is_transient
from worker.sif.schema import SifBodyError, validate_body

log = logging.getLogger("worker.invoices.notify")

# A DeliveryAttempt whose error starts with this was refused before any byte was sent.
NOT_SENT = "not sent: "
RESEND_ACTION = "resend"

SessionSource = Engine | sessionmaker[Session]

_DELIVERY_ATTEMPT = insert(DeliveryAttempt.__table__)  # built once, executed with values


@dataclass(frozen=True)
class DeliveryOutcome:
    """What one ``deliver`` call did.

    ``result``: delivered / already_held / unauthorized / bad_request / not_found /
    exhausted / http_<code> / retry_* (row in retry_wait) / invalid_request / build_error
    (never sent) / not_claimed (not due, or someone else holds it) / lease_lost (our lease
    was taken over while we sent; the attempt is recorded, the row left to the new owner).
    """

    notification_id: str
    result: str
    state: NotificationState | None = None
    status_code: int | None = None
    next_attempt_at: datetime | None = None
    error: str | None = None

    @property
    def settled(self) -> bool:
        return self.state in (NotificationState.DELIVERED, NotificationState.FAILED)

    @property
    def follow_ups(self) -> tuple[Ring, ...]:
        """The retry on the countdown fast path (later ones wait for the sweeper)."""
        if self.next_attempt_at is None:
            return ()
        delay = (self.next_attempt_at - utcnow()).total_seconds()
        return (doorbell.notify(self.notification_id, countdown=max(0.0, delay)),)

    @property
    def summary(self) -> str:
        """For people (Flower's task result): ``delivered 204``, ``retry_http_503 503``."""
        return f"{self.result} {self.status_code}" if self.status_code is not None else self.result


@dataclass(frozen=True)
class _Answer:
    status_code: int | None
    body_text: str | None
    duration_ms: int
    error: str | None
    transport_error: str | None


@dataclass(frozen=True)
class ClaimedInvoice:
    """What delivering needs from the invoice (``payload.InvoiceFields`` and the target)."""

    id: str
    reference: str
    empresa_ref_id: str
    pedidoga: str | None
    sat_uuid: str | None
    stamped_xml: bytes | None
    state: str
    error_kind: str | None
    errors: list[dict[str, str]] | None


@dataclass(frozen=True)
class Claimed:
    """The outbox row as read under our lease, with its invoice."""

    id: str
    status: str
    attempts: int
    first_404_at: datetime | None
    invoice: ClaimedInvoice
    breakers_quiet: bool  # every breaker closed, no failure counted (breakers.QUIET)

    @classmethod
    def born_ok(cls, notification_id: str, *, invoice_id: str, reference: str,
                empresa_ref_id: str, pedidoga: str | None, sat_uuid: str,
                stamped_xml: bytes, state: str) -> Claimed:
        """An OK row born claimed (``lifecycle.outbox(leased_to=...)``), from the values
        the stamping settle wrote in the same transaction: what ``_read_claimed`` would
        read back (tests/pipeline/test_stamping.py compares the two). Born only when the
        stamp's claim saw every breaker quiet."""
        invoice = ClaimedInvoice(id=invoice_id, reference=reference,
                                 empresa_ref_id=empresa_ref_id, pedidoga=pedidoga,
                                 sat_uuid=sat_uuid, stamped_xml=stamped_xml,
                                 state=state, error_kind=None, errors=None)
        return cls(notification_id, "OK", 1, None, invoice, breakers_quiet=True)


_N, _I = Notification.__table__, Invoice.__table__
_NOTIFICATION_COLUMNS = ("id", "status", "attempts", "first_404_at")
_INVOICE_COLUMNS = tuple(f.name for f in fields(ClaimedInvoice))
# One SELECT by primary key, built once (the ORM's two session.get cost ~1.5 ms more per
# delivery, measured on PostgreSQL), that also says whether the breakers are quiet.
_READ_CLAIMED = (
    select(*(_N.c[c] for c in _NOTIFICATION_COLUMNS),
           *(_I.c[c].label(f"invoice_{c}") for c in _INVOICE_COLUMNS), breakers.QUIET)
    .join_from(_N, _I, _I.c.id == _N.c.invoice_id)
    .where(_N.c.id == bindparam("notification_id"))
)


def _read_claimed(session: Session, notification_id: str) -> Claimed | None:
    row = session.connection().execute(
        _READ_CLAIMED, {"notification_id": notification_id}).mappings().first()
    if row is None:
        return None
    invoice = ClaimedInvoice(**{c: row[f"invoice_{c}"] for c in _INVOICE_COLUMNS})
    return Claimed(**{c: row[c] for c in _NOTIFICATION_COLUMNS}, invoice=invoice,
                    breakers_quiet=bool(row["breakers_quiet"]))


def _factory(source: SessionSource) -> sessionmaker[Session]:
    return session_factory(source) if isinstance(source, Engine) else source


def deliver(
    source: SessionSource,
    notification_id: str,
    *,
    client: SifClient,
    settings: Settings,
    owner: str,
    now: datetime | None = None,
    rng: random.Random | None = None,
) -> DeliveryOutcome:
    """Claim one outbox row, PUT its body to SIF, record the attempt and settle the row.

    ``now`` pins the clock for the whole call (tests); without it the claim uses the time
    at the start and the settlement the time after the answer. A database error after
    the PUT propagates and leaves the row ``sending``: its lease expiry recovers it.
    """
    clock_fixed = now is not None
    now = as_utc(now)
    factory = _factory(source)

    with factory.begin() as session:
        if not claim_notification(
            session, notification_id, owner=owner, lease_s=settings.claim_lease_s, now=now
        ):
            return DeliveryOutcome(notification_id, "not_claimed")
        notification = _read_claimed(session, notification_id)
        if notification is None:  # deleted under us: nothing to send
            return DeliveryOutcome(notification_id, "not_claimed")
        key = target_key(settings, notification.invoice.empresa_ref_id)
        blocked = (None if notification.breakers_quiet
                   else breakers.blocking(session, (key,), notification_id))
        if blocked is not None:
            # No PUT while SIF refuses this target: wait, without burning an attempt.
            return _hold(session, notification, key, blocked.describe(), owner, now)
    return send(factory, notification, client=client, settings=settings, owner=owner,
                now=now if clock_fixed else None, claimed_at=now, rng=rng)


def send(
    source: SessionSource,
    claimed: Claimed,
    *,
    client: SifClient,
    settings: Settings,
    owner: str,
    claimed_at: datetime | None = None,
    now: datetime | None = None,
    rng: random.Random | None = None,
) -> DeliveryOutcome:
    """The rest of a delivery, for a row ``owner`` holds (``deliver`` claimed it, or it was
    born claimed: ``Claimed.born_ok``): build and check the body, PUT it, record the
    attempt and settle the row, fenced by the lease. ``claimed_at`` is the attempt's
    start (default: now); ``now`` pins the settlement's clock (tests)."""
    factory = _factory(source)
    rng = rng or random.Random()
    started_at = claimed_at or now or utcnow()
    invoice, notification_id = claimed.invoice, claimed.id
    bind_contextvars(invoice_id=invoice.id, reference=invoice.reference,
                     empresa_ref_id=invoice.empresa_ref_id, sat_uuid=invoice.sat_uuid)
    try:
        body = body_for(invoice, claimed, type_=settings.sif_type)
        validate_body(body)
        client.url_for(invoice.empresa_ref_id)  # path-safe empresaRefId, resolvable target
    except (PayloadError, SifBodyError, SifConfigError) as exc:
        log.error("SIF notification %s not sent, its request is invalid: %s", notification_id, exc)
        return _settle_unsent(factory, notification_id, "invalid_request", str(exc), owner,
                              started_at)
    except Exception as exc:  # a bug in building the body (PDF, extraction...): no retry storm
        log.exception("SIF notification %s not sent, building its body failed", notification_id)
        return _settle_unsent(
            factory, notification_id, "build_error", f"{type(exc).__name__}: {exc}", owner,
            started_at,
        )

    answer = _put(client, invoice.empresa_ref_id, body)  # validated above
    return _settle(factory, claimed, invoice, answer, settings, owner, started_at,
                   now or utcnow(), rng)


def _put(client: SifClient, empresa_ref_id: str, body: dict[str, Any]) -> _Answer:
    try:
        response = client.put_status(empresa_ref_id, body, validated=True)  # deliver validated it
    except SifTransportError as exc:
        kind = TIMEOUT if isinstance(exc, SifTimeout) else CONNECTION
        return _Answer(None, None, exc.duration_ms, f"{kind}: {exc}", kind)
    return _Answer(response.status_code, response.body_text, response.duration_ms, None, None)


def _settle_unsent(
    factory: sessionmaker[Session],
    notification_id: str,
    result: str,
    error: str,
    owner: str,
    now: datetime,
) -> DeliveryOutcome:
    """Nothing was sent: record why, and fail the row for operations (a bug, not SIF)."""
    error = redact(NOT_SENT + error)[:2000]
    with factory.begin() as session:
        session.add(
            DeliveryAttempt(
                notification_id=notification_id, started_at=now, duration_ms=0,
                status_code=None, error=error, worker=owner,
            )
        )
        moved = move(
            session, NOTIFICATION_EDGES["failed"], notification_id, owner=owner, now=now,
            result=result, next_attempt_at=None,
        )
    state = NotificationState.FAILED if moved else None
    return DeliveryOutcome(notification_id, result if moved else "lease_lost", state, error=error)


def _transient_failures(session: Session, notification_id: str) -> tuple[int, datetime | None]:
    """5xx / no-answer attempts since the row was last resent by operations, and when the
    first of them started."""
    since = session.scalar(
        select(func.max(AuditLog.at)).where(
            AuditLog.notification_id == notification_id, AuditLog.action == RESEND_ACTION
        )
    )
    stmt = (
        select(func.count(), func.min(DeliveryAttempt.started_at))
        .select_from(DeliveryAttempt)
        .where(
            DeliveryAttempt.notification_id == notification_id,
            or_(DeliveryAttempt.status_code.is_(None), DeliveryAttempt.status_code >= 500),
            or_(DeliveryAttempt.error.is_(None), not_(DeliveryAttempt.error.startswith(NOT_SENT))),
        )
    )
    if since is not None:
        stmt = stmt.where(DeliveryAttempt.started_at >= since)
    count, first = session.execute(stmt).one()
    return int(count or 0), first


def _settle(
    factory: sessionmaker[Session],
    claimed: Claimed,
    invoice: ClaimedInvoice,
    answer: _Answer,
    settings: Settings,
    owner: str,
    started_at: datetime,
    now: datetime,
    rng: random.Random,
) -> DeliveryOutcome:
    """``claimed``: the row as read under our lease (nobody else writes it while we hold it;
    if somebody took it over, the fenced transition below changes nothing)."""
    notification_id = claimed.id
    with factory.begin() as session:
        session.connection().execute(_DELIVERY_ATTEMPT, dict(
            notification_id=notification_id, started_at=started_at,
            duration_ms=answer.duration_ms, status_code=answer.status_code,
            error=answer.error, response_body=answer.body_text, worker=owner,
        ))
        transient, since = (_transient_failures(session, notification_id)
                            if is_transient(answer.status_code) else (0, None))
        decision = decide(
            status_code=answer.status_code,
            transport_error=answer.transport_error,
            attempts=claimed.attempts,
            transient_failures=transient,
            first_404_at=claimed.first_404_at,
            now=now,
            settings=settings,
            rng=rng,
            transient_since=since,
        )
        key = target_key(settings, invoice.empresa_ref_id)
        _observe(session, key, answer, settings, now, quiet=claimed.breakers_quiet)
        values: dict[str, Any] = {
            "result": decision.result,
            "last_status_code": answer.status_code,
            "next_attempt_at": decision.next_attempt_at,
            "first_404_at": decision.first_404_at,
        }
        if decision.state == NotificationState.DELIVERED:
            values["delivered_at"] = now
        if decision.state == NotificationState.HELD:
            values.update(hold_key=key, attempts=max(0, claimed.attempts - 1))
        edge = settle_edge(NOTIFICATION_EDGES, NotificationState.SENDING, decision.state)
        moved = move(session, edge, notification_id, owner=owner, now=now, **values)

    what = answer.status_code if answer.status_code is not None else answer.error
    if not moved:
        log.warning(
            "SIF notification %s: answer %s recorded, but our lease was taken over; "
            "the row is left to its new owner", notification_id, what,
        )
        return DeliveryOutcome(
            notification_id, "lease_lost", None, answer.status_code, error=answer.error
        )
    _log_decision(notification_id, invoice, decision.result, decision.log_level, what, answer, settings)
    return DeliveryOutcome(
        notification_id, decision.result, decision.state, answer.status_code,
        decision.next_attempt_at, answer.error,
    )


def target_key(settings: Settings, empresa_ref_id: str) -> str:
    """The breaker key of the SIF target this empresa's notifications go to."""
    target = resolve_target(settings, empresa_ref_id)
    return breakers.sif_key(target.base_url, target.generator_id)


def target_fingerprints(settings: Settings) -> dict[str, str]:
    """Each SIF target's breaker key and a digest of the settings it is called with: a
    breaker opened by a 401 closes by itself when its target's digest changes."""
    empresas = [None, *settings.sif_overrides]
    found: dict[str, str] = {}
    for empresa in empresas:
        target = resolve_target(settings, empresa or "")
        digest = hashlib.sha256("|".join((target.base_url, target.generator_id,
                                          target.secret.get_secret_value())).encode()).hexdigest()
        found.setdefault(breakers.sif_key(target.base_url, target.generator_id), digest)
    return found


def _observe(session: Session, key: str, answer: _Answer, settings: Settings,
             now: datetime, *, quiet: bool) -> None:
    """What this answer teaches the target's breaker: a 401 opens it at once (no probes: the
    secret will not fix itself), a run of 5xx/timeouts opens it with probes, an answer
    closes it (nothing to write when the claim saw every breaker quiet)."""
    code = answer.status_code
    if code == 401:
        breakers.open_(session, key, code="401", probe_after_s=0.0, now=now,
                       cause="SIF refused our secret (401) for this target",
                       fingerprint=target_fingerprints(settings).get(key))
    elif is_transient(code):
        breakers.note_failure(session, key, code=str(code or answer.transport_error),
                              cause=f"SIF unavailable ({code or answer.transport_error})",
                              threshold=settings.breaker_service_threshold,
                              window_s=settings.breaker_service_window_s,
                              probe_after_s=settings.breaker_probe_s, now=now)
    elif code is not None and code < 500 and not quiet:
        breakers.succeeded(session, (key,), now=now, reason=f"SIF answered {code}")


def _hold(session: Session, notification: Claimed, key: str, cause: str, owner: str,
          now: datetime) -> DeliveryOutcome:
    """Back to waiting on the target's breaker, the claim's attempt given back (the caller's
    transaction commits it)."""
    moved = move(session, NOTIFICATION_EDGES["hold"], notification.id, owner=owner, now=now,
                 hold_key=key, attempts=max(0, notification.attempts - 1), result="held")
    log.info("SIF notification %s held: %s", notification.id, cause)
    return DeliveryOutcome(notification.id, "held" if moved else "lease_lost",
                           NotificationState.HELD if moved else None)


def _log_decision(
    notification_id: str,
    invoice: ClaimedInvoice,
    result: str,
    level: int,
    what: object,
    answer: _Answer,
    settings: Settings,
) -> None:
    where = f"empresa {invoice.empresa_ref_id} reference {invoice.reference}"
    if result == "unauthorized":
        generator = settings.sif_overrides.get(invoice.empresa_ref_id, {}).get(
            "generator_id", settings.sif_generator_id
        )
        log.error(
            "SIF REFUSED OUR SECRET (401) for %s, generatorId %s: notification %s is held, "
            "with every other one for this SIF target, until its secret changes in the "
            "settings or an operator resets the breaker (billing breaker reset / resend).",
            where, generator, notification_id,
        )
    elif result == "bad_request":
        log.error(
            "SIF refused our body (400) for %s: notification %s failed; this is a bug on our "
            "side. SIF said: %s", where, notification_id, answer.body_text,
        )
    else:
        log.log(level, "SIF notification %s (%s): %s -> %s", notification_id, where, what, result)
