"""The moves of the lifecycle (``worker.db.states``) as SQL, the same on SQLite and PostgreSQL.

A claim is one UPDATE that succeeds for exactly one caller:

    UPDATE invoices SET state='stamping', lease_owner=:me, lease_expires_at=:t, attempts+1
     WHERE id=:id AND ((state IN ('received','retry_wait') AND next_attempt_at <= :now)
                       OR (state='stamping' AND lease_expires_at < :now))

rowcount 1 means the row is ours until the lease expires; 0 means someone else has it,
it is not due, or it is settled. Its WHERE is built from the claim edges (``claim`` and
``take_over``) and their ``due`` rule, as are the sweeper's and the pending poller's due
queries (``due_where``): one definition of "due".

Every other state change is ``move(session, edge, id, ...)``: a compare-and-set UPDATE
``WHERE id = :id AND state IN (<edge sources>)``, plus ``AND lease_owner = :owner`` for a
fenced edge (calling one without an owner is a ``TypeError``). It releases the lease and
returns whether the row moved. ``outbox()`` is the one writer of SIF outbox rows.

The hot statements (the claims, each move's UPDATE for one set of columns, the outbox
INSERT) are built once with bind parameters and executed with values, so SQLAlchemy
neither rebuilds them nor recompiles them per call (measured: building the claim was
~2.6 ms of Python per call, ~0.8 ms when executed from its cached form).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, Literal, cast

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    CursorResult,
    Insert,
    Row,
    String,
    Update,
    and_,
    bindparam,
    case,
    false,
    insert,
    literal_column,
    or_,
    true,
    update,
)
from sqlalchemy.orm import Session

from worker.db import breakers
from worker.db.models import Invoice, Notification, UtcDateTime, new_id, utcnow
from worker.db.states import (
    INVOICE_CLAIM,
    INVOICE_EDGES,
    NOTIFICATION_CLAIM,
    NOTIFICATION_EDGES,
    Edge,
    InvoiceState,
)

Model = type[Invoice] | type[Notification]

# The bind parameters of the prepared statements (their names are no column's name).
ROW_ID: BindParameter[str] = bindparam("row_id", type_=String())
NOW: BindParameter[datetime] = bindparam("now", type_=UtcDateTime())
_OWNER: BindParameter[str] = bindparam("owner", type_=String())
_LEASE_UNTIL: BindParameter[datetime] = bindparam("lease_until", type_=UtcDateTime())


def _model_for(edge: Edge) -> Model:
    if INVOICE_EDGES.get(edge.name) is edge:
        return Invoice
    if NOTIFICATION_EDGES.get(edge.name) is edge:
        return Notification
    from worker.db.models import (
        Cancellation,  # issue 16: cancellations (worker.cancellations)
    )
    from worker.db.states import CANCELLATION_EDGES

    if CANCELLATION_EDGES.get(edge.name) is edge:
        return Cancellation  # type: ignore[return-value]
    raise ValueError(f"edge {edge.name!r} is not in the lifecycle tables")


# --- which rows are due --------------------------------------------------------------------


def in_states(column: ColumnElement[str], states: Iterable[str]) -> ColumnElement[bool]:
    """``column IN ('a', 'b')`` with the states written into the SQL: they are the state
    tables' own constants, and a literal list is compiled once with the statement, where
    a parameter list is expanded on every execution (~55 us per statement, measured)."""
    names = sorted(str(s) for s in states)
    if not all(name.isidentifier() for name in names):  # never a value from outside
        raise ValueError(f"not a state name: {names!r}")
    return column.in_([literal_column(f"'{name}'") for name in names])


def due_where(model: Model, edges: Iterable[Edge],
              at: datetime | ColumnElement[datetime]) -> ColumnElement[bool]:
    """Rows of ``model`` that one of ``edges`` may take at ``at``, by each edge's due rule
    (``at`` may be a bind parameter, e.g. ``NOW``, for a statement built once)."""
    c = model.__table__.c
    arms: list[ColumnElement[bool]] = []
    for edge in edges:
        in_sources = in_states(c.state, edge.sources)
        if edge.due == "next_attempt":
            arms.append(and_(in_sources,
                             or_(c.next_attempt_at.is_(None), c.next_attempt_at <= at)))
        elif edge.due == "lease_expired":
            arms.append(and_(in_sources, c.lease_expires_at < at))
        else:
            raise ValueError(f"edge {edge.name!r} has no due rule")
    return or_(*arms) if arms else false()


# --- claims --------------------------------------------------------------------------------


@functools.cache
def _claim_statement(model: Model, edges: tuple[Edge, ...]) -> Update:
    """The claim UPDATE for ``edges``, built once; execute it with ``_claim_params``."""
    (working,) = {e.target for e in edges}
    c = model.__table__.c  # Core columns: one statement, no ORM bookkeeping on the hot path
    return (
        update(model.__table__)
        .where(c.id == ROW_ID, due_where(model, edges, NOW))
        .values(
            state=working,
            state_changed_at=NOW,
            lease_owner=_OWNER,
            lease_expires_at=_LEASE_UNTIL,
            attempts=c.attempts + 1,
        )
    )


def _claim_params(row_id: str, owner: str, lease_s: float, now: datetime | None) -> dict[str, Any]:
    now = now or utcnow()
    return {"row_id": row_id, "now": now, "owner": owner,
            "lease_until": now + timedelta(seconds=lease_s)}


@functools.cache
def _invoice_claim() -> Update:
    t = Invoice.__table__
    taking_over = in_states(t.c.state, INVOICE_EDGES["take_over"].sources)
    return (
        _claim_statement(Invoice, INVOICE_CLAIM)
        .values(must_check_stamped=case((taking_over, true()), else_=t.c.must_check_stamped))
        .returning(t.c.xml, t.c.attempts, t.c.must_check_stamped, t.c.reference,
                   t.c.empresa_ref_id, t.c.pedidoga, t.c.emisor_rfc, t.c.stamp_deadline_at,
                   breakers.QUIET)
    )


def claim_invoice_for_stamp(
    session: Session, invoice_id: str, *, owner: str, lease_s: float, now: datetime | None = None
) -> Row[Any] | None:
    """``claim`` (received|retry_wait, due) or ``take_over`` (stamping, lease expired) ->
    stamping, leased to ``owner``; the same statement returns what the stamp needs: the
    stored XML, attempts (this claim counted), the ids for the log, whether a stamp
    call may already have gone out for these bytes (``must_check_stamped``), and whether
    every breaker is quiet (``breakers_quiet``: ``worker.db.breakers.QUIET``).

    A take-over sets ``must_check_stamped``: the previous holder died or hung mid-call,
    and its stamp may exist. (SET reads the row as it was before the UPDATE, on SQLite and
    PostgreSQL alike.) No row: not ours to stamp now.
    """
    return session.connection().execute(
        _invoice_claim(), _claim_params(invoice_id, owner, lease_s, now)).first()


def claim_notification(
    session: Session, notification_id: str, *, owner: str, lease_s: float,
    now: datetime | None = None,
) -> bool:
    """``claim`` (queued|retry_wait, due) or ``take_over`` (sending, lease expired) ->
    sending, leased to ``owner``."""
    stmt = _claim_statement(Notification, NOTIFICATION_CLAIM)
    params = _claim_params(notification_id, owner, lease_s, now)
    return session.connection().execute(stmt, params).rowcount == 1


# --- moves ---------------------------------------------------------------------------------


def move(
    session: Session,
    edge: Edge,
    row_id: str,
    *,
    owner: str | None = None,
    now: datetime | None = None,
    unless: ColumnElement[bool] | None = None,
    unless_params: Mapping[str, Any] | None = None,
    **values: Any,
) -> bool:
    """Take ``edge`` for one row if its state is one of the edge's sources.

    A fenced edge needs ``owner`` and applies only while that worker holds the lease. With
    ``unless``, it applies only while that condition is false. Returns False (and changes
    nothing) otherwise. The lease is released; ``values`` are written with the state.

    The UPDATE is built once per edge, fencing, ``unless`` and set of columns when the
    values are plain values and ``unless`` is a prepared condition whose bind parameters
    ``unless_params`` fills (it may use ``ROW_ID`` and ``NOW``); otherwise per call.
    """
    if edge.fenced and owner is None:
        raise TypeError(f"edge {edge.name!r} is fenced: pass the lease owner")
    if edge.due == "lease_expired" or edge in INVOICE_CLAIM or edge in NOTIFICATION_CLAIM:
        raise TypeError(f"edge {edge.name!r} is a claim: use the claim functions")
    now = now or utcnow()
    if (unless is None or unless_params is not None) and not any(
            isinstance(v, ColumnElement) for v in values.values()):
        stmt = _move_statement(edge, owner is not None, unless, tuple(sorted(values)))
        params = {f"v_{k}": v for k, v in values.items()}
        params.update(unless_params or {}, row_id=row_id, now=now, owner=owner)
        result = session.connection().execute(stmt, params)
        return cast("CursorResult[Any]", result).rowcount == 1  # an UPDATE
    model = _model_for(edge)
    c = model.__table__.c
    built = update(model.__table__).where(c.id == row_id, in_states(c.state, edge.sources))
    if owner is not None:
        built = built.where(c.lease_owner == owner)
    if unless is not None:
        built = built.where(~unless)
    built = built.values(state=edge.target, state_changed_at=now, lease_owner=None,
                         lease_expires_at=None, **values)
    return cast("CursorResult[Any]", session.execute(built)).rowcount == 1  # an UPDATE


@functools.lru_cache(maxsize=256)
def _move_statement(edge: Edge, fenced: bool, unless: ColumnElement[bool] | None,
                    columns: tuple[str, ...]) -> Update:
    model = _model_for(edge)
    c = model.__table__.c
    stmt = update(model.__table__).where(c.id == ROW_ID, in_states(c.state, edge.sources))
    if fenced:
        stmt = stmt.where(c.lease_owner == _OWNER)
    if unless is not None:
        stmt = stmt.where(~unless)
    return stmt.values(
        state=edge.target, state_changed_at=NOW, lease_owner=None, lease_expires_at=None,
        **{k: bindparam(f"v_{k}", type_=c[k].type) for k in columns})


def settle_edge(edges: dict[str, Edge], working: str, target: str) -> Edge:
    """The fenced edge a holder takes from ``working`` to ``target`` (a SIF decision's state)."""
    found = [e for e in edges.values() if e.fenced and working in e.sources and e.target == target]
    if len(found) != 1:
        raise ValueError(f"no single fenced edge from {working!r} to {target!r}")
    return found[0]


# --- the outbox ----------------------------------------------------------------------------


def outbox(session: Session, invoice_id: str, status: Literal["OK", "NOK"], *,
           now: datetime | None = None, leased_to: str | None = None,
           lease_s: float = 0.0) -> str:
    """Write one SIF outbox row for the invoice (in the caller's transaction); returns its id.

    ``rung_at`` is set: the caller rings its doorbell right after the commit, so the
    sweeper leaves it alone for ``sweep_rering_after_s`` (if that publish fails, the
    sweeper rings it after that).

    ``leased_to``: the row is born claimed, ``sending`` with its first attempt counted and
    leased to that owner for ``lease_s`` (the stamping process's delivery thread, which
    sends it right after the commit: ``worker.invoices.first_delivery``). The row and its
    claim are one INSERT, as ``claim`` would have left it; if the owner dies, the lease
    expires and ``take_over`` recovers it like any other.
    """
    notification_id = new_id()
    now = now or utcnow()
    values: dict[str, Any] = {"id": notification_id, "invoice_id": invoice_id,
                              "status": status, "rung_at": now}
    if leased_to is not None:
        values.update(state=NOTIFICATION_CLAIM[0].target, state_changed_at=now, attempts=1,
                      lease_owner=leased_to, lease_expires_at=now + timedelta(seconds=lease_s))
    session.connection().execute(_outbox_statement(), values)
    return notification_id


@functools.cache
def _outbox_statement() -> Insert:
    return insert(Notification.__table__)


__all__ = [
    "NOW",
    "ROW_ID",
    "InvoiceState",
    "claim_invoice_for_stamp",
    "claim_notification",
    "due_where",
    "move",
    "outbox",
    "settle_edge",
]


def claim_cancellation(
    session: Session, cancellation_id: str, *, owner: str, lease_s: float,
    now: datetime | None = None,
) -> Row[Any] | None:
    """``claim`` (requested, due) or ``take_over`` (sending, lease expired) -> sending, leased
    to ``owner`` (issue 16, ``worker.cancellations``). A take-over sets ``must_check``: the
    previous holder's request may have reached Finkok, so SAT is asked before sending again.
    Returns what the send needs; None: not ours now."""
    from worker.db.models import Cancellation
    from worker.db.states import CANCELLATION_CLAIM, CANCELLATION_EDGES

    t = Cancellation.__table__
    taking_over = in_states(t.c.state, CANCELLATION_EDGES["take_over"].sources)
    stmt = (
        _claim_statement(Cancellation, CANCELLATION_CLAIM)
        .values(must_check=case((taking_over, true()), else_=t.c.must_check))
        .returning(t.c.invoice_id, t.c.sat_uuid, t.c.emisor_rfc, t.c.receptor_rfc, t.c.total,
                   t.c.motivo, t.c.folio_sustitucion, t.c.attempts, t.c.must_check)
    )
    return session.connection().execute(
        stmt, _claim_params(cancellation_id, owner, lease_s, now)).first()
