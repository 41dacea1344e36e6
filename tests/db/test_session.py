"""``pinned_sessions``: every transaction of a task on one pooled connection, committed or
rolled back on its own, and one Session class per process whatever the number of tasks
(sessionmaker builds a class per maker, and a new class costs its event setup)."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import sessionmaker

from worker.db.models import AuditLog
from worker.db.session import pinned_sessions


def _count(engine: Engine) -> int:
    with engine.connect() as c:
        return int(c.scalar(select(func.count()).select_from(AuditLog)) or 0)


def test_pinned_sessions_share_one_connection_and_one_session_class(engine: Engine) -> None:
    before = _count(engine)
    with pinned_sessions(engine) as first, pinned_sessions(engine) as second:
        assert type(first()) is type(second())  # negative control below: plain makers differ
        with first.begin() as s:
            connection = s.connection()
            s.add(AuditLog(actor="t", action="pinned", reason="committed"))
        with pytest.raises(RuntimeError), first.begin() as s:
            s.add(AuditLog(actor="t", action="pinned", reason="rolled back"))
            s.flush()
            raise RuntimeError("the transaction fails")
        with first.begin() as s:
            assert s.connection() is connection  # the same pooled connection, again
            assert s.scalar(select(func.count()).select_from(AuditLog)) == before + 1
        assert not first().expire_on_commit
    assert _count(engine) == before + 1
    assert type(sessionmaker(bind=engine)()) is not type(sessionmaker(bind=engine)())
