"""Engines and sessions.

SQLite (the embedded default) is opened in WAL mode with a busy timeout, and every
transaction starts with ``BEGIN IMMEDIATE``: the write lock is taken up front, so two
processes never both read a row as claimable and then race to update it (SQLAlchemy
drops ``with_for_update`` on SQLite silently). The rule that goes with it: never hold a
transaction open across a network call.

PostgreSQL uses psycopg 3 with READ COMMITTED; claims there are compare-and-set UPDATEs.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from worker.settings import Settings, get_settings

P = ParamSpec("P")
T = TypeVar("T")

SQLITE_BUSY_TIMEOUT_S = 30

_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def normalize_url(url: str) -> str:
    """Accept plain postgresql:// URLs and use the psycopg 3 driver for them."""
    u = make_url(url)
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    return u.render_as_string(hide_password=False)


def create_db_engine(url: str, *, pool_size: int = 10, echo: bool = False) -> Engine:
    url = normalize_url(url)
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:":
            Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            echo=echo,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
        )
        _configure_sqlite(engine)
        return engine
    return create_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
        isolation_level="READ COMMITTED",
    )


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide when transactions begin.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def get_engine(settings: Settings | None = None) -> Engine:
    """The process-wide engine for the configured database (one per URL)."""
    settings = settings or get_settings()
    url = settings.database_url
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = create_db_engine(url, pool_size=settings.database_pool_size)
            _engines[url] = engine
        return engine


def dispose_engines() -> None:
    """Drop pooled connections, e.g. in a freshly forked worker process."""
    with _lock:
        for engine in _engines.values():
            engine.dispose(close=False)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


# A thread keeps its pinned connection between uses that come back to back: no pool
# checkout (and no pre-ping round trip) per task. One idle longer than this goes back to
# the pool at the next use, and the checkout's pre-ping checks the one that replaces it.
KEEP_IDLE_S = 10.0


@dataclass(eq=False)
class _Kept:
    connection: Connection
    sessions: _PinnedSessions
    pid: int
    thread: threading.Thread
    last_used: float

    def close(self) -> None:
        _all_kept.pop(id(self), None)
        if self.pid == os.getpid():  # (a forked child never touches its parent's socket)
            self.connection.close()


_kept = threading.local()
_all_kept: dict[int, _Kept] = {}  # every kept connection of this process, by id


@contextmanager
def pinned_sessions(engine: Engine) -> Iterator[sessionmaker[Session]]:
    """Sessions that all run on one pooled connection: a task's few short transactions
    cost one checkout (and one pre-ping round trip) instead of one each. Between them no
    transaction is open, so holding the connection across a network call holds no lock.

    The thread keeps that connection for its next use while uses come back to back (less
    than ``KEEP_IDLE_S`` apart): a busy worker process checks out once, not per task. A
    block that raises gives its connection back to the pool (rolled back; a dropped one
    is discarded), so an error never leaves a broken connection kept. Not for nesting:
    a use inside another on the same thread gets a connection of its own."""
    kept = _take_kept(engine)
    try:
        yield kept.sessions
    except BaseException:
        kept.close()
        raise
    if kept.connection.in_transaction():  # (every block of ours commits or rolls back)
        kept.connection.rollback()
    kept.last_used = time.monotonic()
    previous: _Kept | None = getattr(_kept, "pin", None)
    if previous is not None:  # a nested use kept its own: keep one
        previous.close()
    _kept.pin = kept


def _take_kept(engine: Engine) -> _Kept:
    kept: _Kept | None = getattr(_kept, "pin", None)
    _kept.pin = None
    if kept is not None and (kept.pid != os.getpid() or kept.connection.engine is not engine
                             or kept.connection.closed or kept.connection.invalidated
                             or time.monotonic() - kept.last_used > KEEP_IDLE_S):
        kept.close()
        kept = None
    if kept is None:
        for other in list(_all_kept.values()):  # (rare: a checkout) those of ended threads
            if not other.thread.is_alive() or other.pid != os.getpid():
                other.close()
        connection = engine.connect()
        kept = _Kept(connection, _PinnedSessions(connection), os.getpid(),
                     threading.current_thread(), time.monotonic())
        _all_kept[id(kept)] = kept
    return kept


def release_pinned() -> None:
    """Give back every connection this process's threads keep (at process shutdown)."""
    _kept.pin = None
    for kept in list(_all_kept.values()):
        kept.close()


@functools.cache
def _pinned_session_class() -> type[Session]:
    return sessionmaker().class_


class _PinnedSessions(sessionmaker[Session]):
    """A sessionmaker for one connection whose sessions are all of one class per process.

    ``sessionmaker`` makes a new ``Session`` subclass each time it is built, and SQLAlchemy
    sets up a new class's event dispatch on its first session: ~300 us, measured, for each
    task's maker (against ~50 us for the session itself). No event is ever attached to
    these makers, so they share one class."""

    def __init__(self, connection: Connection) -> None:
        super().__init__(bind=connection, expire_on_commit=False)
        self.class_ = _pinned_session_class()
        self._idle: Session | None = None

    @contextmanager
    def begin(self) -> Iterator[Session]:
        """As ``sessionmaker.begin()``: one transaction, committed or rolled back, and the
        session closed at the end (nothing it loaded outlives the block). The closed
        session is used again by the next block (a new one cost ~60-100 us of setup, three
        per invoice); a block inside another gets one of its own."""
        session, self._idle = self._idle or self(), None
        try:
            with session.begin():
                yield session
        finally:
            session.close()
            self._idle = session


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any exception."""
    with session_factory(engine).begin() as session:
        yield session


def _connection_dropped(exc: BaseException) -> bool:
    from sqlalchemy.exc import DBAPIError

    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def retry_dropped_connection(fn: Callable[P, T]) -> Callable[P, T]:
    """Run a short transaction again when the database dropped its connection (a restart,
    a failover, an idle-connection reaper): up to 3 tries, 0.2 s then 0.4 s apart. Only
    for functions whose whole body is one transaction: never around a network call to
    Finkok or SIF, which must not be repeated by a database hiccup."""
    from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

    return retry(retry=retry_if_exception(_connection_dropped), stop=stop_after_attempt(3),
                 wait=wait_exponential(multiplier=0.2, max=2), reraise=True)(fn)
