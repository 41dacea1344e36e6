"""What the routes use: sessions, the stamp publisher, readiness checks.

Built when the server starts (the app's lifespan), not when the app is made, so building
the app (e.g. to write its OpenAPI document) opens no database and touches no broker.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from celery import Celery
from fastapi import Request
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from worker.doorbell import Bell as Publish
from worker.settings import Settings

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 3.0


class Services:
    def __init__(
        self,
        settings: Settings,
        *,
        engine: Engine,
        sessions: sessionmaker[Session],
        celery: Celery,
        publish: Publish | None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.sessions = sessions
        self.celery = celery
        self.publish = publish

    @classmethod
    def start(cls, settings: Settings, *, publish: bool = True) -> "Services":
        from worker.celery_app import STAMP_TASK, create_app
        from worker.db.session import create_db_engine, session_factory
        from worker.doorbell import bell_for

        engine = create_db_engine(settings.database_url, pool_size=settings.database_pool_size)
        celery = create_app(settings)
        ring: Publish | None = bell_for(celery, STAMP_TASK) if publish else None
        return cls(settings, engine=engine, sessions=session_factory(engine), celery=celery, publish=ring)

    def close(self) -> None:
        self.engine.dispose()

    # --- readiness --------------------------------------------------------------------
    def check_database(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def check_broker(self) -> None:
        short = {"socket_connect_timeout": READY_TIMEOUT_S - 1, "socket_timeout": READY_TIMEOUT_S - 1}
        options = {**(self.celery.conf.broker_transport_options or {}), **short}
        with self.celery.connection_for_write(
            connect_timeout=READY_TIMEOUT_S - 1, transport_options=options
        ) as conn:
            conn.ensure_connection(
                max_retries=1, interval_start=0, interval_step=0, timeout=READY_TIMEOUT_S - 1
            )

    async def readiness(self) -> dict[str, str]:
        """"ok" or "down (<error type>)" per dependency, each bounded by READY_TIMEOUT_S."""
        checks = {"database": self.check_database, "broker": self.check_broker}
        results = await asyncio.gather(*(_probe(name, fn) for name, fn in checks.items()))
        return dict(zip(checks, results))


async def _probe(name: str, fn: Callable[[], Any]) -> str:
    try:
        await asyncio.wait_for(run_in_threadpool(fn), READY_TIMEOUT_S)
    except Exception as exc:  # the type is enough for a probe; details go to the log
        kind = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
        log.warning("readiness: %s is down: %s", name, kind)
        return f"down ({kind})"
    return "ok"


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services
