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


def _checkouts(engine: Engine) -> list[int]:
    from sqlalchemy import event

    seen: list[int] = []
    event.listen(engine, "checkout", lambda *_: seen.append(1))
    return seen


def test_a_thread_keeps_its_connection_for_back_to_back_uses(engine: Engine) -> None:
    from worker.db.session import release_pinned

    release_pinned()
    seen = _checkouts(engine)
    connections = []
    for _ in range(3):
        with pinned_sessions(engine) as sessions, sessions.begin() as s:
            connections.append(s.connection().connection.dbapi_connection)
    assert len(seen) == 1  # one checkout for three uses
    assert connections[0] is connections[1] is connections[2]

    other: list[object] = []

    def elsewhere() -> None:
        with pinned_sessions(engine) as sessions, sessions.begin() as s:
            other.append(s.connection().connection.dbapi_connection)

    import threading

    thread = threading.Thread(target=elsewhere)
    thread.start()
    thread.join()
    assert other[0] is not connections[0]  # another thread, a connection of its own
    release_pinned()
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]


def test_an_idle_or_failed_use_gives_the_connection_back(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker.db import session as module

    module.release_pinned()
    seen = _checkouts(engine)
    with pinned_sessions(engine) as sessions, sessions.begin() as s:
        s.add(AuditLog(actor="t", action="pinned", reason="kept"))
    with pytest.raises(RuntimeError), pinned_sessions(engine):
        raise RuntimeError("the task fails")
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]  # given back
    with pinned_sessions(engine) as sessions, sessions.begin() as s:
        s.add(AuditLog(actor="t", action="pinned", reason="after the failure"))
    assert len(seen) == 2
    monkeypatch.setattr(module, "KEEP_IDLE_S", 0.0)  # every use finds it idle
    with pinned_sessions(engine) as sessions, sessions.begin() as s:
        s.add(AuditLog(actor="t", action="pinned", reason="after idling"))
    assert len(seen) == 3
    assert _count(engine) == 3
    module.release_pinned()


def test_a_kept_connection_the_server_dropped_is_replaced(engine: Engine) -> None:
    """PostgreSQL kills the kept connection's backend (a restart, an idle reaper): the next
    use fails once, gives it back, and the one after checks out a live one."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from worker.db.session import release_pinned

    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no server connection to drop (the PostgreSQL run covers it)")
    release_pinned()
    with pinned_sessions(engine) as sessions, sessions.begin() as s:
        pid = s.scalar(text("SELECT pg_backend_pid()"))
    with engine.connect() as admin:
        admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    with pytest.raises(DBAPIError) as info, pinned_sessions(engine) as sessions, \
            sessions.begin() as s:
        s.scalar(text("SELECT 1"))
    assert info.value.connection_invalidated
    with pinned_sessions(engine) as sessions, sessions.begin() as s:
        assert s.scalar(text("SELECT pg_backend_pid()")) != pid
    release_pinned()


def test_each_block_ends_its_session_and_the_next_reuses_it(engine: Engine) -> None:
    """Every ``begin()`` block is a transaction whose session is closed at the end (an
    object it loaded is detached, not served stale to the next block); the closed session
    object serves the next block; a block inside another has its own."""
    from sqlalchemy import inspect

    from worker.db.session import release_pinned

    with pinned_sessions(engine) as sessions:
        with sessions.begin() as s:
            s.add(AuditLog(actor="t", action="pinned", reason="one"))
        with sessions.begin() as first:
            row = first.scalars(select(AuditLog)).one()
            with sessions.begin() as inner:
                assert inner is not first  # nested: a session of its own
        assert inspect(row).detached and not first.identity_map  # closed at the block's end
        with sessions.begin() as second:
            assert second is first  # reused once closed
            assert second.scalars(select(AuditLog)).one() is not row  # read afresh
    release_pinned()
