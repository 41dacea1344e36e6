"""The filter vocabulary shared by `invoices list`, `reprocess` and `resend`.

Times are ISO dates (``2026-11-20``, ``2026-11-20T08:00``, with or without an offset;
naive means UTC) or durations back from now (``30m``, ``6h``, ``2d``, ``1w``). The
error-code filter looks inside the invoice's ``errors`` JSON list with each backend's own
JSON functions (``json_each`` on SQLite, ``json_array_elements`` on PostgreSQL).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

from sqlalchemy import (
    ColumnElement,
    Select,
    case,
    exists,
    func,
    literal_column,
    select,
)

from worker.db.models import Cancellation, Invoice, Notification
from worker.db.states import CancellationState, InvoiceState, NotificationState

TimeField = Literal["changed", "created"]
SelectT = TypeVar("SelectT", bound=Select)  # type: ignore[type-arg]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class FilterError(ValueError):
    """A filter value that cannot be understood (the message names it)."""


def parse_when(text: str, now: datetime) -> datetime:
    """``2d`` -> now minus two days; ``2026-11-20`` -> that midnight, UTC."""
    match = _DURATION.match(text)
    if match:
        amount, unit = float(match.group(1)), match.group(2).lower()
        return now - timedelta(seconds=amount * _UNIT_S[unit])
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise FilterError(
            f"{text!r}: expected an ISO date/time (2026-11-20, 2026-11-20T08:00) "
            "or a duration (30m, 6h, 2d, 1w)"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def parse_duration_s(text: str) -> float:
    """``1h`` -> 3600.0 (for windows)."""
    match = _DURATION.match(text)
    if not match:
        raise FilterError(f"{text!r}: expected a duration such as 15m, 1h, 1d")
    return float(match.group(1)) * _UNIT_S[match.group(2).lower()]


def _check_states(
    states: tuple[str, ...],
    allowed: type[InvoiceState] | type[NotificationState] | type[CancellationState],
) -> None:
    known = {str(s) for s in allowed}
    for state in states:
        if state not in known:
            raise FilterError(f"unknown state {state!r}: expected one of {', '.join(sorted(known))}")


@dataclass(frozen=True)
class InvoiceFilter:
    """Every field is optional; all given fields must match (AND)."""

    states: tuple[str, ...] = ()
    empresa: str | None = None
    reference: str | None = None
    emisor_rfc: str | None = None
    receptor_rfc: str | None = None
    code: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    by: TimeField = "changed"  # since/until and the order apply to this time
    cancel_states: tuple[str, ...] = ()  # the invoice's cancellation at SAT is in one of these

    def __post_init__(self) -> None:
        _check_states(self.states, InvoiceState)
        _check_states(self.cancel_states, CancellationState)
        if self.by not in ("changed", "created"):
            raise FilterError(f"--by {self.by!r}: expected changed or created")

    @property
    def empty(self) -> bool:
        return not (self.states or self.empresa or self.reference or self.emisor_rfc
                    or self.receptor_rfc or self.code or self.since or self.until
                    or self.cancel_states)

    @classmethod
    def parse(
        cls,
        *,
        states: list[str] | None = None,
        empresa: str | None = None,
        reference: str | None = None,
        emisor: str | None = None,
        receptor: str | None = None,
        code: str | None = None,
        since: str | None = None,
        until: str | None = None,
        by: str = "changed",
        now: datetime,
        cancel_states: list[str] | None = None,
    ) -> InvoiceFilter:
        """From command-line strings (RFCs upper-cased, times parsed against ``now``)."""
        return cls(
            states=tuple(s.strip().lower() for s in states or ()),
            empresa=empresa or None,
            reference=reference or None,
            emisor_rfc=emisor.strip().upper() if emisor else None,
            receptor_rfc=receptor.strip().upper() if receptor else None,
            code=code.strip() if code else None,
            since=parse_when(since, now) if since else None,
            until=parse_when(until, now) if until else None,
            by=by,  # type: ignore[arg-type]
            cancel_states=tuple(s.strip().lower() for s in cancel_states or ()),
        )


def invoice_time_column(by: TimeField) -> Any:
    return Invoice.created_at if by == "created" else Invoice.state_changed_at


def has_error_code(code: str, dialect: str) -> ColumnElement[bool]:
    """True where ``invoices.errors`` holds an item whose code is ``code`` (any case)."""
    wanted = code.upper()
    if dialect == "postgresql":
        # JSON 'null' (a cleared list) is a scalar: json_array_elements would raise on it.
        array = case(
            (func.json_typeof(Invoice.errors) == "array", Invoice.errors),
            else_=literal_column("'[]'::json"),
        )
        items = func.json_array_elements(array).table_valued("value").alias("error_item")
        item_code: ColumnElement[Any] = items.c.value.op("->>")(literal_column("'code'"))
    else:
        items = func.json_each(Invoice.errors).table_valued("value").alias("error_item")
        item_code = func.json_extract(items.c.value, "$.code")
    return exists(select(1).select_from(items).where(func.upper(item_code) == wanted))


def apply_invoice_filter(stmt: SelectT, flt: InvoiceFilter, dialect: str) -> SelectT:
    """``stmt`` (a select over invoices) narrowed by the filter."""
    if flt.states:
        stmt = stmt.where(Invoice.state.in_(flt.states))
    if flt.empresa:
        stmt = stmt.where(Invoice.empresa_ref_id == flt.empresa)
    if flt.reference:
        stmt = stmt.where(Invoice.reference == flt.reference)
    if flt.emisor_rfc:
        stmt = stmt.where(Invoice.emisor_rfc == flt.emisor_rfc)
    if flt.receptor_rfc:
        stmt = stmt.where(Invoice.receptor_rfc == flt.receptor_rfc)
    if flt.code:
        stmt = stmt.where(has_error_code(flt.code, dialect))
    if flt.cancel_states:
        stmt = stmt.where(exists(select(1).where(Cancellation.invoice_id == Invoice.id,
                                                 Cancellation.state.in_(flt.cancel_states))))
    column = invoice_time_column(flt.by)
    if flt.since:
        stmt = stmt.where(column >= flt.since)
    if flt.until:
        stmt = stmt.where(column < flt.until)
    return stmt


@dataclass(frozen=True)
class NotificationFilter:
    """Filters for `resend`: notification state and result, OK/NOK, empresa, time."""

    states: tuple[str, ...] = ()
    results: tuple[str, ...] = ()
    status: str | None = None  # OK / NOK
    empresa: str | None = None
    since: datetime | None = None  # on the notification's state_changed_at
    until: datetime | None = None

    def __post_init__(self) -> None:
        _check_states(self.states, NotificationState)
        if self.status not in (None, "OK", "NOK"):
            raise FilterError(f"--status {self.status!r}: expected OK or NOK")

    @property
    def empty(self) -> bool:
        return not (self.states or self.results or self.status or self.empresa
                    or self.since or self.until)

    @classmethod
    def parse(
        cls,
        *,
        states: list[str] | None = None,
        results: list[str] | None = None,
        status: str | None = None,
        empresa: str | None = None,
        since: str | None = None,
        until: str | None = None,
        now: datetime,
    ) -> NotificationFilter:
        return cls(
            states=tuple(s.strip().lower() for s in states or ()),
            results=tuple(r.strip().lower() for r in results or ()),
            status=status.strip().upper() if status else None,
            empresa=empresa or None,
            since=parse_when(since, now) if since else None,
            until=parse_when(until, now) if until else None,
        )


def apply_notification_filter(stmt: SelectT, flt: NotificationFilter) -> SelectT:
    """``stmt`` (a select over notifications) narrowed by the filter."""
    if flt.states:
        stmt = stmt.where(Notification.state.in_(flt.states))
    if flt.results:
        stmt = stmt.where(Notification.result.in_(flt.results))
    if flt.status:
        stmt = stmt.where(Notification.status == flt.status)
    if flt.empresa:
        stmt = stmt.where(
            Notification.invoice_id.in_(
                select(Invoice.id).where(Invoice.empresa_ref_id == flt.empresa)
            )
        )
    if flt.since:
        stmt = stmt.where(Notification.state_changed_at >= flt.since)
    if flt.until:
        stmt = stmt.where(Notification.state_changed_at < flt.until)
    return stmt
