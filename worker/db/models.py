"""The record of every invoice, every Finkok call, every SIF notification and delivery.

The database is the truth; the broker only rings a doorbell. Column types are portable
between SQLite (embedded default) and PostgreSQL (production).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from worker.db.states import InvoiceState, NotificationState

# Stable constraint names, so Alembic migrations are identical on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# BIGINT on PostgreSQL, INTEGER on SQLite (where only INTEGER PRIMARY KEY autoincrements).
BigIntPk = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(now: datetime | None) -> datetime:
    """``now`` in UTC (the current time when None); a naive datetime is refused."""
    if now is None:
        return utcnow()
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on both backends.

    PostgreSQL keeps the offset; SQLite stores naive text, so values are normalised to UTC
    on the way in and UTC is re-attached on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass timezone-aware UTC values")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    # Every model here is declared with __tablename__, so its __table__ is a Table (SQLAlchemy
    # types it FromClause, which Core's insert/update/upsert do not take)
    __table__: ClassVar[Table]


class Invoice(Base):
    __tablename__ = "invoices"

    # Our own id (UUID4 text): the Celery argument, and SIF's `folio` on a NOK.
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    empresa_ref_id: Mapped[str] = mapped_column(String(64))
    reference: Mapped[str] = mapped_column(String(64))
    pedidoga: Mapped[str | None] = mapped_column(String(64))

    # The exact bytes the producer sent (the Sello is over them) and their SHA-256.
    xml: Mapped[bytes] = mapped_column(LargeBinary)
    xml_sha256: Mapped[str] = mapped_column(String(64))
    xml_version: Mapped[int] = mapped_column(Integer, default=1)  # +1 on each replace
    emisor_rfc: Mapped[str] = mapped_column(String(13))
    receptor_rfc: Mapped[str] = mapped_column(String(13))
    total: Mapped[str] = mapped_column(String(32))  # as written in the CFDI

    state: Mapped[str] = mapped_column(String(16), default=InvoiceState.RECEIVED)
    state_changed_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # stamp claims so far
    # Set when the last Finkok call may have reached Finkok without an answer: the next
    # attempt must ask `stamped` before it may `stamp` again.
    must_check_stamped: Mapped[bool] = mapped_column(Boolean, default=False)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # When the sweeper last re-published this row: it does not ring again while that
    # doorbell may still be waiting in the queue.
    rung_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # While ``held``: the breaker it waits on (worker.db.breakers), e.g. "finkok:account".
    hold_key: Mapped[str | None] = mapped_column(String(200))
    # SAT's deadline for stamping (Fecha + 72 h, read conservatively), less nothing: the
    # margin is a setting. None for rows stored before it existed (no deadline then).
    stamp_deadline_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    # The outcome.
    sat_uuid: Mapped[str | None] = mapped_column(String(36), unique=True)
    stamped_xml: Mapped[bytes | None] = mapped_column(LargeBinary)  # Finkok's exact text, UTF-8
    fecha_timbrado: Mapped[str | None] = mapped_column(String(32))
    no_certificado_sat: Mapped[str | None] = mapped_column(String(20))
    sat_status: Mapped[str | None] = mapped_column(String(8))  # query_pending: S / F
    stamped_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    error_kind: Mapped[str | None] = mapped_column(String(16))  # fiscal_data/permanent/account/...
    # [{"code": "CFDI40143", "message": "...", "kind": "fiscal_data"}, ...]
    errors: Mapped[list[dict[str, str]] | None] = mapped_column(JSON)

    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)

    stamp_attempts: Mapped[list[StampAttempt]] = relationship(
        back_populates="invoice", order_by="StampAttempt.id", cascade="all, delete-orphan"
    )
    notifications: Mapped[list[Notification]] = relationship(
        back_populates="invoice", order_by="Notification.created_at", cascade="all, delete-orphan"
    )

    __table_args__ = (
        UniqueConstraint("empresa_ref_id", "reference", name="uq_invoices_empresa_reference"),
        Index("ix_invoices_state_next_attempt", "state", "next_attempt_at"),
        Index("ix_invoices_reference", "reference"),
        Index("ix_invoices_created_at", "created_at"),
        Index("ix_invoices_emisor_rfc", "emisor_rfc"),
        Index("ix_invoices_receptor_rfc", "receptor_rfc"),
        Index("ix_invoices_hold_key", "hold_key"),
    )

    def __repr__(self) -> str:
        return f"<Invoice {self.id} {self.empresa_ref_id}/{self.reference} {self.state}>"


class StampAttempt(Base):
    """One call to Finkok on behalf of one invoice (stamp, stamped, query_pending...)."""

    __tablename__ = "stamp_attempts"

    id: Mapped[int] = mapped_column(BigIntPk, primary_key=True, autoincrement=True)
    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoices.id", ondelete="CASCADE"))
    operation: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    # success / already_stamped / not_stamped / pending / transient / ambiguous /
    # not_sent / rejected / account
    outcome: Mapped[str] = mapped_column(String(24))
    codes: Mapped[list[str] | None] = mapped_column(JSON)
    message: Mapped[str | None] = mapped_column(Text)
    worker: Mapped[str | None] = mapped_column(String(128))

    invoice: Mapped[Invoice] = relationship(back_populates="stamp_attempts")

    __table_args__ = (
        Index("ix_stamp_attempts_invoice_id", "invoice_id"),
        Index("ix_stamp_attempts_started_at", "started_at"),
    )


class Notification(Base):
    """Outbox row: one outcome (OK or NOK) to report to SIF, written with the state change."""

    __tablename__ = "notifications"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoices.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(3))  # OK / NOK
    state: Mapped[str] = mapped_column(String(16), default=NotificationState.QUEUED)
    state_changed_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    first_404_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    rung_at: Mapped[datetime | None] = mapped_column(UtcDateTime())  # see Invoice.rung_at
    hold_key: Mapped[str | None] = mapped_column(String(200))  # see Invoice.hold_key
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    # delivered (204) / already_held (409) / unauthorized / not_found / exhausted ...
    result: Mapped[str | None] = mapped_column(String(24))
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)

    invoice: Mapped[Invoice] = relationship(back_populates="notifications")
    deliveries: Mapped[list[DeliveryAttempt]] = relationship(
        back_populates="notification", order_by="DeliveryAttempt.id", cascade="all, delete-orphan"
    )

    __table_args__ = (
        Index("ix_notifications_state_next_attempt", "state", "next_attempt_at"),
        Index("ix_notifications_invoice_id", "invoice_id"),
        Index("ix_notifications_hold_key", "hold_key"),
    )


class DeliveryAttempt(Base):
    """One PUT to SIF for one notification."""

    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(BigIntPk, primary_key=True, autoincrement=True)
    notification_id: Mapped[str] = mapped_column(
        ForeignKey("notifications.id", ondelete="CASCADE")
    )
    started_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    status_code: Mapped[int | None] = mapped_column(Integer)  # None: no HTTP answer
    error: Mapped[str | None] = mapped_column(Text)  # timeout / connection error text
    response_body: Mapped[str | None] = mapped_column(Text)  # truncated
    worker: Mapped[str | None] = mapped_column(String(128))

    notification: Mapped[Notification] = relationship(back_populates="deliveries")

    __table_args__ = (Index("ix_delivery_attempts_notification_id", "notification_id"),)


class AuditLog(Base):
    """Who did what to which invoice or notification, and why (operations)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigIntPk, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(32))  # submit-replace / reprocess / resend ...
    invoice_id: Mapped[str | None] = mapped_column(String(36))
    notification_id: Mapped[str | None] = mapped_column(String(36))
    reason: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    __table_args__ = (
        Index("ix_audit_log_invoice_id", "invoice_id"),
        Index("ix_audit_log_at", "at"),
    )


class ApiKey(Base):
    """A key an ERP sends to the HTTP intake API. Only the SHA-256 of its secret is kept.

    The key reads ``bk_<prefix>_<secret>``: the prefix finds the row, the secret's hash is
    compared in constant time. ``empresa_ref_ids`` is a JSON list of the empresaRefIds the
    key may submit and read for, or the string ``"*"`` for all of them.
    """

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(128))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    secret_sha256: Mapped[str] = mapped_column(String(64))
    empresa_ref_ids: Mapped[list[str] | str] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class Heartbeat(Base):
    """When a periodic job last ran (``sweep``, ``poll_credits``), and how often it means to.

    One row per job, overwritten each run. Metrics, alerts and ``billing health`` call a job
    dead when its row is older than a few ``interval_s``.
    """

    __tablename__ = "heartbeats"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    interval_s: Mapped[float | None] = mapped_column(Float)


class FinkokCredit(Base):
    """The last ``report_credit`` reading for one emisor RFC (the beat's ``poll_credits``).

    ``credits`` is None when Finkok reported no figure (an on-demand account) or the call
    failed (``error`` says why, never a secret).
    """

    __tablename__ = "finkok_credits"

    taxpayer_id: Mapped[str] = mapped_column(String(13), primary_key=True)
    credits: Mapped[int | None] = mapped_column(Integer)
    reported_at: Mapped[str | None] = mapped_column(String(32))  # Finkok's own date text
    polled_at: Mapped[datetime] = mapped_column(UtcDateTime())
    error: Mapped[str | None] = mapped_column(Text)


class Breaker(Base):
    """One fault scope's breaker, shared by every worker (worker.db.breakers).

    ``key``: ``finkok:account``, ``finkok:service``, ``finkok:emisor:<RFC>`` or
    ``sif:<base URL>|<generatorId>``. ``closed``: calls flow. ``open``: no call is made for
    the scope; rows wait in ``held``. At ``next_probe_at`` one held row is released as the
    probe (``probe_id``, state ``half_open``); its success closes the breaker.
    """

    __tablename__ = "breakers"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), default="closed")
    code: Mapped[str | None] = mapped_column(String(32))
    cause: Mapped[str | None] = mapped_column(Text)
    opened_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    failures: Mapped[int] = mapped_column(Integer, default=0)  # service: the current run
    first_failure_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    probe_interval_s: Mapped[float] = mapped_column(Float, default=0.0)
    next_probe_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    probe_id: Mapped[str | None] = mapped_column(String(36))
    fingerprint: Mapped[str | None] = mapped_column(String(64))  # SIF: the settings it failed with
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)

class ReconcileRun(Base):
    """One reconciliation of one emisor RFC against Finkok's ledger (``worker.ops.reconcile``).

    A row per RFC per run (``run_id`` groups the RFCs of one run). ``orphans`` are UUIDs
    Finkok lists that no invoice holds (``matched`` of them are documents of ours,
    ``adopted`` were taken as their invoice's stamp in this run); ``phantoms`` are stamps of
    ours Finkok neither lists nor confirms through ``stamped``. ``details`` holds one entry
    per orphan and phantom (UUIDs, invoice ids, what Finkok and SAT said); never a secret.
    """

    __tablename__ = "reconcile_runs"

    id: Mapped[int] = mapped_column(BigIntPk, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(36))
    trigger: Mapped[str] = mapped_column(String(16))  # cli / beat
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    emisor_rfc: Mapped[str] = mapped_column(String(13))
    window_from: Mapped[datetime] = mapped_column(UtcDateTime())
    window_to: Mapped[datetime] = mapped_column(UtcDateTime())
    started_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    finkok_uuids: Mapped[int] = mapped_column(Integer, default=0)  # report_uuid's count
    credits_used: Mapped[int | None] = mapped_column(Integer)  # report_total (None: unknown)
    our_stamps: Mapped[int] = mapped_column(Integer, default=0)
    orphans: Mapped[int] = mapped_column(Integer, default=0)
    matched: Mapped[int] = mapped_column(Integer, default=0)
    adopted: Mapped[int] = mapped_column(Integer, default=0)
    phantoms: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)  # the run could not ask Finkok
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    __table_args__ = (
        Index("ix_reconcile_runs_emisor_started", "emisor_rfc", "started_at"),
        Index("ix_reconcile_runs_run_id", "run_id"),
    )


class Cancellation(Base):
    """The cancellation of one stamped invoice at SAT (``worker.cancellations``).

    One row per invoice: the same request twice is this one row; a new request after a
    rejection or a failure moves it back to ``requested`` (audited). ``acuse`` holds the
    exact bytes of the SAT acuse Finkok returned (its ``Acuse`` text, UTF-8), or the one
    ``get_receipt`` returned when the first answer was lost. ``request_xml`` is the last
    signed ``Cancelacion`` sent (no secret: a public certificate and a signature).
    ``must_check``: a request may have reached Finkok unanswered, so the next attempt
    asks ``get_receipt`` and ``get_sat_status`` before it sends again. ``hold_key``: the
    breaker a ``held`` row waits on (``worker.db.breakers``), as for invoices.
    """

    __tablename__ = "cancellations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoices.id"), unique=True)
    sat_uuid: Mapped[str] = mapped_column(String(36))
    emisor_rfc: Mapped[str] = mapped_column(String(13))
    receptor_rfc: Mapped[str] = mapped_column(String(13))
    total: Mapped[str] = mapped_column(String(32))
    motivo: Mapped[str] = mapped_column(String(2))
    folio_sustitucion: Mapped[str | None] = mapped_column(String(36))
    reason: Mapped[str | None] = mapped_column(Text)
    requested_by: Mapped[str | None] = mapped_column(String(128))

    state: Mapped[str] = mapped_column(String(16), default="requested")
    state_changed_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # send claims so far
    polls: Mapped[int] = mapped_column(Integer, default=0)  # get_sat_status polls so far
    must_check: Mapped[bool] = mapped_column(Boolean, default=False)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    rung_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    hold_key: Mapped[str | None] = mapped_column(String(200))  # see Invoice.hold_key

    estatus_uuid: Mapped[str | None] = mapped_column(String(16))  # Finkok's per-folio 201/202/...
    sat_estado: Mapped[str | None] = mapped_column(String(32))  # Vigente / Cancelado
    sat_estatus_cancelacion: Mapped[str | None] = mapped_column(String(64))  # En proceso ...
    es_cancelable: Mapped[str | None] = mapped_column(String(64))
    acuse: Mapped[bytes | None] = mapped_column(LargeBinary)
    acuse_fecha: Mapped[str | None] = mapped_column(String(40))
    request_xml: Mapped[bytes | None] = mapped_column(LargeBinary)
    errors: Mapped[list[dict[str, str]] | None] = mapped_column(JSON)
    cancelled_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)

    __table_args__ = (
        Index("ix_cancellations_state_next_attempt", "state", "next_attempt_at"),
        Index("ix_cancellations_sat_uuid", "sat_uuid"),
        Index("ix_cancellations_hold_key", "hold_key"),
    )
