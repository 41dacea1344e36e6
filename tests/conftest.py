"""Shared test fixtures.

Reference data lives in ``../shared`` beside the clone (CI has it there). Tests that read
it use the ``shared_dir`` fixture, which skips with a clear reason elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DIR = Path(os.environ.get("BILLING_SHARED_DIR", REPO_ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED_DIR.is_dir():
        pytest.skip(f"reference data not found at {SHARED_DIR} (set BILLING_SHARED_DIR)")
    return SHARED_DIR


# --- servers ------------------------------------------------------------------------------
# CI sets BILLING_TEST_REQUIRE_SERVERS=1: a missing PostgreSQL/Redis/RabbitMQ is then a failure,
# never a silent skip. Elsewhere the server-backed variants skip with the reason.
REQUIRE_SERVERS = os.environ.get("BILLING_TEST_REQUIRE_SERVERS") == "1"
POSTGRES_URL = os.environ.get(
    "BILLING_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def server_missing(what: str, why: str) -> None:
    message = f"{what} not reachable ({why})"
    if REQUIRE_SERVERS:
        pytest.fail(f"{message}, and BILLING_TEST_REQUIRE_SERVERS=1", pytrace=False)
    pytest.skip(message)


def _postgres_database() -> Iterator[str]:
    """A fresh database on the test server for this pytest session, dropped afterwards."""
    import uuid

    import psycopg
    from sqlalchemy.engine import make_url

    base = make_url(POSTGRES_URL)
    conninfo = base.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        admin = psycopg.connect(conninfo, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        server_missing(f"PostgreSQL at {base.host}:{base.port}", str(exc).strip().splitlines()[0])
    name = f"billing_test_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield base.set(database=name).render_as_string(hide_password=False)
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated database: an SQLite file, and a PostgreSQL database (same tests on both)."""
    from worker.db.migrate import upgrade

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'billing.db'}"
        upgrade(url)
        yield url
        return
    gen = _postgres_database()
    url = next(gen)
    upgrade(url)
    yield url
    gen.close()


@pytest.fixture(scope="session")
def _engines() -> Iterator[dict[str, Engine]]:
    engines: dict[str, Engine] = {}
    yield engines
    for engine in engines.values():
        engine.dispose()


@pytest.fixture()
def engine(db_url: str, _engines: dict[str, Engine]) -> Iterator[Engine]:
    """The test database's engine; every table is emptied after each test."""
    from worker.db.models import Base
    from worker.db.session import create_db_engine

    eng = _engines.get(db_url)
    if eng is None:
        eng = _engines[db_url] = create_db_engine(db_url)
    yield eng
    with eng.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())


@pytest.fixture()
def sessions(engine: Engine) -> sessionmaker[Session]:
    from worker.db.session import session_factory

    return session_factory(engine)


REDIS_URL = os.environ.get("BILLING_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis to use as the broker: the real server when it answers (always in CI), else
    fakeredis's TCP server on loopback (a developer's laptop)."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        if REQUIRE_SERVERS:
            server_missing(f"Redis at {REDIS_URL}", str(exc))
        import threading

        from fakeredis import TcpFakeServer

        server = TcpFakeServer(("127.0.0.1", 0), server_type="redis")
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        host, port = server.server_address[:2]
        yield f"redis://{host}:{port}/0"
        server.shutdown()
        return
    redis.Redis.from_url(REDIS_URL).flushdb()
    yield REDIS_URL


RABBITMQ_URL = os.environ.get("BILLING_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")


def rabbitmq_vhost() -> Iterator[str]:
    """The URL of a RabbitMQ vhost of its own (bench.rabbitmq), deleted afterwards: its
    queues, messages and connections are no other run's. Skips with the reason where the
    server does not answer or no vhost can be made (fails with BILLING_TEST_REQUIRE_SERVERS=1)."""
    from bench.rabbitmq import RabbitVhost, VhostAdminError, broker_answers

    why = broker_answers(RABBITMQ_URL)
    if why:
        server_missing(f"RabbitMQ at {_masked(RABBITMQ_URL)}", why)
    vhost = RabbitVhost(RABBITMQ_URL)
    try:
        vhost.create()
    except VhostAdminError as exc:
        server_missing(f"RabbitMQ vhost administration for {_masked(RABBITMQ_URL)}", str(exc))
    try:
        yield vhost.url
    finally:
        vhost.delete()


def _masked(url: str) -> str:
    from worker.settings import mask_url_password

    return mask_url_password(url)


@pytest.fixture()
def rabbitmq_url() -> Iterator[str]:
    """A fresh vhost on the test RabbitMQ for one test (see ``rabbitmq_vhost``)."""
    yield from rabbitmq_vhost()
