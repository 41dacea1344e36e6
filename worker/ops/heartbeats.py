"""Heartbeats: when a periodic job last ran, stored in the database (table ``heartbeats``).

The beat's sweeper and the credit poller write one here each run, so metrics, alerts and
``billing health`` can tell, from any machine, whether the beat (and a worker consuming the
maintenance queue) is alive. One row per name, overwritten (an upsert on both SQLite and
PostgreSQL, so two writers never fail on the primary key).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.orm import Session, sessionmaker

from worker.db.models import Heartbeat, utcnow

SWEEP = "sweep"
POLL_CREDITS = "poll_credits"


def upsert(session: Session, table: Table, values: dict[str, Any], key: str) -> None:
    """INSERT ``values`` or, when the row with that ``key`` exists, UPDATE it (one statement)."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    else:  # pragma: no cover - the project runs on SQLite and PostgreSQL only
        raise RuntimeError(f"no upsert for the {dialect} dialect")
    stmt = insert(table).values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=[key], set_={k: stmt.excluded[k] for k in values if k != key}
    )
    session.execute(stmt)


def beat(session: Session, name: str, *, interval_s: float | None = None,
         at: datetime | None = None) -> None:
    """Record that job ``name`` ran now (or ``at``), meaning to run every ``interval_s``."""
    upsert(session, Heartbeat.__table__,
           {"name": name, "at": at or utcnow(), "interval_s": interval_s}, "name")


def record(sessions: sessionmaker[Session], name: str, *, interval_s: float | None = None) -> None:
    """``beat`` in its own transaction."""
    with sessions.begin() as session:
        beat(session, name, interval_s=interval_s)


def last_beats(session: Session) -> dict[str, Heartbeat]:
    """Every heartbeat row by name."""
    return {row.name: row for row in session.scalars(select(Heartbeat))}
