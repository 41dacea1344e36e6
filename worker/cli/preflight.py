"""Checks a long-running command makes before it starts, so a fault is one clear line
(worker/cli/errors.py) instead of a server's traceback or a silent retry loop.

Each check raises :class:`worker.cli.errors.Fault` (or lets the driver's own connection
error rise, which errors.py maps); none of them changes anything.
"""

from __future__ import annotations

import errno
import socket
from typing import TYPE_CHECKING

from worker.cli.errors import Fault

if TYPE_CHECKING:
    from worker.settings import Settings


def ensure_port_free(host: str, port: int, option: str = "--port") -> None:
    """Raise Fault naming ``option`` when ``host:port`` cannot be bound (something listens).

    Binds the way servers do (SO_REUSEADDR, so a port in TIME_WAIT is free) and lets go at
    once; a server that takes the port in between still fails, with its own message.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise Fault(f"port {port} on {host} is already in use", option) from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise Fault(f"cannot bind {host}: not an address of this machine",
                            "--address/--host") from None
            raise


def check_database(settings: Settings) -> None:
    """Connect once (SELECT 1); a database down or a bad URL rises as the driver's error."""
    from sqlalchemy import text

    from worker.db.session import create_db_engine

    engine = create_db_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    finally:
        engine.dispose()


def check_broker(settings: Settings, *, retries: int = 2) -> None:
    """Connect to the broker (a few quick retries); kombu's OperationalError rises if down."""
    from worker.celery_app import create_app

    with create_app(settings).connection_for_write() as conn:
        conn.ensure_connection(
            max_retries=retries,
            # kombu sleeps these seconds as given; celery-types annotates them int
            interval_start=0.2, interval_step=0.5, interval_max=1.0,  # type: ignore[arg-type]
        )
