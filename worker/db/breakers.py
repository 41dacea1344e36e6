"""Breakers shared by every worker: one row per fault scope, in the database.

A breaker is ``closed`` (calls flow), ``open`` (no call is made for its scope: claimed
rows go to ``held`` without burning an attempt, and the sweeper does not ring them) or
``half_open`` (the first claimer becomes the probe; everyone else is held). The state is
in the database, so it survives restarts and is the same on every machine.

Keys: ``finkok:account`` (credentials, credits, the URL: all stamping), ``finkok:service``
(Finkok or SAT unavailable), ``finkok:emisor:<RFC>`` (that RFC's setup at Finkok) and
``sif:<base URL>|<generatorId>`` (SIF refused our secret for that target).

* ``open_(…)`` opens at once (an account- or emisor-scoped answer, a SIF 401).
* ``note_failure(…)`` counts a service failure; ``threshold`` of them without a success in
  between, within ``window_s``, open the breaker (one timeout is not an outage).
* ``succeeded(…)`` closes the given keys and resets the failure run (a normal answer).
* ``due_probes(…)`` (the sweeper) half-opens each open breaker whose probe is due, on a
  growing interval, so one real call tests the scope; ``take_probe(…)`` is that call's
  compare-and-set.

Every open and close is logged and recorded in the audit log with its cause.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    Select,
    Update,
    bindparam,
    exists,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from worker.db.models import AuditLog, Breaker, utcnow

if TYPE_CHECKING:
    from worker.settings import Settings

log = logging.getLogger(__name__)

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
MAX_PROBE_FACTOR = 8  # probes back off from breaker_probe_s up to 8 times it (30 s -> 4 min)
ACCOUNT_KEY = "finkok:account"
SERVICE_KEY = "finkok:service"


def emisor_key(rfc: str) -> str:
    return f"finkok:emisor:{rfc.upper()}"


def sif_key(base_url: str, generator_id: str) -> str:
    return f"sif:{base_url.rstrip('/')}|{generator_id}"


def finkok_keys(emisor_rfc: str | None) -> tuple[str, ...]:
    """The breakers a stamp for this emisor passes through."""
    keys = (ACCOUNT_KEY, SERVICE_KEY)
    return (*keys, emisor_key(emisor_rfc)) if emisor_rfc else keys


def scope_of_key(key: str) -> str:
    """For metrics and alarms: account / service / emisor / sif."""
    if key.startswith("finkok:emisor:"):
        return "emisor"
    if key.startswith("sif:"):
        return "sif"
    return key.removeprefix("finkok:")


@dataclass(frozen=True)
class Blocking:
    """An open breaker in the way of a call."""

    key: str
    state: str
    code: str | None
    cause: str | None
    opened_at: datetime | None

    def describe(self) -> str:
        since = f" since {self.opened_at:%Y-%m-%d %H:%M} UTC" if self.opened_at else ""
        return f"{self.cause or self.key}{since}"


_COLUMNS = (Breaker.key, Breaker.state, Breaker.code, Breaker.cause, Breaker.opened_at,
            Breaker.probe_id)


# Asked before every stamp and every SIF PUT, and after every answer: built once per number
# of keys (Core, on the table; the keys as k0, k1, ... so that no list is expanded into the
# SQL on every execution), executed with bind parameters.
_T = Breaker.__table__
_NOW = bindparam("now", type_=_T.c.updated_at.type)


@functools.cache
def _statements(n: int) -> tuple[Select[Any], Update, Update]:
    """(not closed, close, reset failures) for ``n`` keys."""
    keys = _T.c.key.in_([bindparam(f"k{i}", type_=_T.c.key.type) for i in range(n)])
    not_closed = (select(*(_T.c[col.key] for col in _COLUMNS))
                  .where(keys, _T.c.state != CLOSED).order_by(_T.c.key))
    close = (update(_T).where(keys, _T.c.state != CLOSED)
             .values(state=CLOSED, failures=0, first_failure_at=None, probe_id=None,
                     next_probe_at=None, probe_interval_s=0.0, updated_at=_NOW)
             .returning(_T.c.key))
    reset = (update(_T).where(keys, _T.c.state == CLOSED, _T.c.failures > 0)
             .values(failures=0, first_failure_at=None, updated_at=_NOW))
    return not_closed, close, reset


# "Every breaker is closed and counts no failure": then nothing can block a call, and a
# normal answer has nothing to close or reset. A claim reads it in its own statement (the
# invoice claim's RETURNING, the notification's read), so the usual case costs no breaker
# statement at all: ``blocking`` and ``succeeded`` run only when the claim saw it false.
# A failure or an opening that lands while a call is in flight is left to the next claim
# that sees it (a success proves the service only for calls that began after the failure).
# One breaker not quiet anywhere (an emisor's, open for days) puts every claim back on the
# per-key read and write: correct, six statements per invoice slower.
QUIET: ColumnElement[bool] = (~exists().where(or_(_T.c.state != CLOSED, _T.c.failures > 0))
                              ).label("breakers_quiet")


def _keys(keys: tuple[str, ...]) -> dict[str, Any]:
    return {f"k{i}": key for i, key in enumerate(keys)}


def blocking(session: Session, keys: tuple[str, ...], row_id: str) -> Blocking | None:
    """The first breaker among ``keys`` that forbids a call for ``row_id`` now, or None.

    A ``half_open`` breaker lets exactly one row through: its probe. The first row to ask
    takes the probe (compare-and-set on ``probe_id``); a row that already is the probe
    passes again (a redelivered task)."""
    rows = session.connection().execute(_statements(len(keys))[0], _keys(keys)).all()
    for row in rows:
        if row.state == HALF_OPEN and (row.probe_id == row_id or take_probe(session, row.key, row_id)):
            continue
        return Blocking(row.key, row.state, row.code, row.cause, row.opened_at)
    return None


def first_not_closed(session: Session, keys: tuple[str, ...]) -> Blocking | None:
    """The first breaker among ``keys`` that is open or half-open, read only: no probe is
    taken. For callers that wait instead of probing (the cancellation poller) and for "did
    this failure leave the breaker open" after ``note_failure``."""
    row = session.connection().execute(_statements(len(keys))[0], _keys(keys)).first()
    return None if row is None else Blocking(row.key, row.state, row.code, row.cause, row.opened_at)


def take_probe(session: Session, key: str, row_id: str) -> bool:
    stmt = (update(Breaker).where(Breaker.key == key, Breaker.state == HALF_OPEN,
                                  Breaker.probe_id.is_(None))
            .values(probe_id=row_id, updated_at=utcnow()))
    return cast("CursorResult[Any]", session.execute(stmt)).rowcount == 1  # an UPDATE


def _ensure(session: Session, key: str, now: datetime) -> None:
    """Create the closed row for ``key`` if it does not exist (race-safe)."""
    if session.get(Breaker, key) is not None:
        return
    try:
        with session.begin_nested():
            session.execute(insert(Breaker).values(key=key, state=CLOSED, failures=0,
                                                   probe_interval_s=0.0, updated_at=now))
    except IntegrityError:  # another worker created it first
        pass


def open_(session: Session, key: str, *, code: str | None, cause: str, probe_after_s: float,
          now: datetime | None = None, fingerprint: str | None = None,
          actor: str = "worker") -> bool:
    """Open (or keep open) the breaker for ``key``. Returns True when this call opened it.

    An already-open breaker keeps its ``opened_at``; a failed probe re-opens a half-open
    one with a doubled probe interval (``probe_after_s`` is the first interval)."""
    now = now or utcnow()
    _ensure(session, key, now)
    row = session.execute(select(*_COLUMNS, Breaker.probe_interval_s)
                          .where(Breaker.key == key).with_for_update()).one()
    if row.state == OPEN:
        session.execute(update(Breaker).where(Breaker.key == key).values(
            code=code, cause=cause, fingerprint=fingerprint, updated_at=now))
        return False
    interval = (min(max(row.probe_interval_s, probe_after_s) * 2, probe_after_s * MAX_PROBE_FACTOR)
                if row.state == HALF_OPEN else probe_after_s)
    session.execute(update(Breaker).where(Breaker.key == key).values(
        state=OPEN, code=code, cause=cause, fingerprint=fingerprint,
        opened_at=row.opened_at if row.state == HALF_OPEN else now,
        probe_interval_s=interval, probe_id=None, failures=0, first_failure_at=None,
        next_probe_at=now + timedelta(seconds=interval) if probe_after_s > 0 else None,
        updated_at=now))
    if row.state == CLOSED:
        log.error("BREAKER OPEN %s: %s; no calls for this scope until it recovers",
                  key, cause, extra={"breaker": key})
        _audit(session, "breaker-open", key, cause, actor, now, {"code": code})
    return bool(row.state == CLOSED)


def note_failure(session: Session, key: str, *, code: str | None, cause: str,
                 threshold: int, window_s: float, probe_after_s: float,
                 now: datetime | None = None) -> bool:
    """Count one service failure; open the breaker when ``threshold`` of them came without
    a success in between within ``window_s``. Returns True when this failure opened it."""
    now = now or utcnow()
    _ensure(session, key, now)
    row = session.execute(select(Breaker.state, Breaker.failures, Breaker.first_failure_at)
                          .where(Breaker.key == key).with_for_update()).one()
    if row.state != CLOSED:
        if row.state == HALF_OPEN:  # the probe failed
            return open_(session, key, code=code, cause=cause, probe_after_s=probe_after_s,
                         now=now)
        return False
    restart = (row.first_failure_at is None
               or row.first_failure_at < now - timedelta(seconds=window_s))
    failures = 1 if restart else row.failures + 1
    session.execute(update(Breaker).where(Breaker.key == key).values(
        failures=failures, first_failure_at=now if restart else row.first_failure_at,
        code=code, cause=cause, updated_at=now))
    if failures >= threshold:
        return open_(session, key, code=code, cause=f"{cause} ({failures} failures in a row)",
                     probe_after_s=probe_after_s, now=now)
    return False


def note_finkok_failure(session: Session, errors: Sequence[Mapping[str, str]], *,
                        settings: Settings, now: datetime) -> bool:
    """One Finkok/SAT service failure (its first error names it) counted toward the service
    breaker, with the settings' threshold, window and probe pause (stamping and
    cancellation alike). Returns True when it opened the breaker."""
    error = errors[0] if errors else {}
    return note_failure(
        session, SERVICE_KEY, code=error.get("code"),
        cause=f"Finkok or SAT unavailable: {error.get('message', '')[:200]}",
        threshold=settings.breaker_service_threshold,
        window_s=settings.breaker_service_window_s,
        probe_after_s=settings.breaker_probe_s, now=now)


def succeeded(session: Session, keys: tuple[str, ...], *, now: datetime | None = None,
              actor: str = "worker", reason: str = "a call succeeded") -> list[str]:
    """A normal answer: close the given breakers and reset their failure runs. Cheap when
    there is nothing to do (two UPDATEs that match no row). Returns the keys it closed."""
    now = now or utcnow()
    connection = session.connection()
    _, close, reset = _statements(len(keys))
    params = {**_keys(keys), "now": now}
    closed = list(connection.execute(close, params).scalars())
    connection.execute(reset, params)
    for key in closed:
        log.warning("BREAKER CLOSED %s: %s; held rows resume", key, reason,
                    extra={"breaker": key})
        _audit(session, "breaker-close", key, reason, actor, now, None)
    return closed


def due_probes(session: Session, now: datetime | None = None) -> list[str]:
    """Half-open every open breaker whose probe is due (and re-arm a half-open one whose
    probe never reported back); returns their keys. The next claim for each is its probe."""
    now = now or utcnow()
    due = session.execute(
        select(Breaker.key, Breaker.probe_interval_s)
        .where(Breaker.state.in_((OPEN, HALF_OPEN)), Breaker.next_probe_at <= now)
        .with_for_update()).all()
    for key, interval in due:
        session.execute(update(Breaker).where(Breaker.key == key).values(
            state=HALF_OPEN, probe_id=None, updated_at=now,
            next_probe_at=now + timedelta(seconds=max(interval, 1.0))))
    return [key for key, _ in due]


def not_closed(session: Session) -> list[Breaker]:
    return list(session.scalars(select(Breaker).where(Breaker.state != CLOSED)
                                .order_by(Breaker.key)))


def all_breakers(session: Session) -> list[Breaker]:
    return list(session.scalars(select(Breaker).order_by(Breaker.key)))


def reset(session: Session, key: str, *, actor: str, reason: str,
          now: datetime | None = None) -> bool:
    """Operations: close one breaker by hand (audited). False when it was not open."""
    return bool(succeeded(session, (key,), now=now, actor=actor, reason=f"reset: {reason}"))


def open_keys_where(column: Any) -> Any:
    """SQL: ``column`` names a breaker that is not closed (for the held-rows queries)."""
    return column.in_(select(Breaker.key).where(Breaker.state != CLOSED))


def _audit(session: Session, action: str, key: str, cause: str, actor: str, now: datetime,
           details: dict[str, Any] | None) -> None:
    session.add(AuditLog(at=now, actor=actor, action=action, reason=cause,
                         details={"breaker": key, **(details or {})}))

