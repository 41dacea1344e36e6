"""What the routes use: sessions, the stamp publisher, readiness checks.

Built when the server starts (the app's lifespan), not when the app is made, so building
the app (e.g. to write its OpenAPI document) opens no database and touches no broker.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from functools import cached_property
from typing import Any

from fastapi import Request
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from worker.doorbell import Bell as Publish
from worker.resources import Resources
from worker.settings import Settings

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 3.0


class Services(Resources):
    """The server's resources (``worker.resources.Resources``) and the stamp doorbell."""

    def __init__(self, settings: Settings, *, publish: bool = True) -> None:
        super().__init__(settings)
        self.ring_stamps = publish

    @cached_property
    def publish(self) -> Publish | None:
        """Intake's doorbell; None: store only (the sweeper rings the rows)."""
        if not self.ring_stamps:
            return None
        from worker.celery_app import STAMP_TASK
        from worker.doorbell import bell_for

        return bell_for(self.celery, STAMP_TASK)

    @classmethod
    def start(cls, settings: Settings, *, publish: bool = True) -> Services:
        services = cls(settings, publish=publish)
        services.engine  # noqa: B018 - the database and the broker client are made at
        services.publish  # noqa: B018 - start-up, not in the first request
        return services

    # --- readiness --------------------------------------------------------------------
    def check_database(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def check_broker(self) -> None:
        from worker.celery_app import connect_once

        connect_once(self.celery, READY_TIMEOUT_S - 1)

    async def readiness(self) -> dict[str, str]:
        """"ok" or "down (<error type>)" per dependency, each bounded by READY_TIMEOUT_S."""
        checks = {"database": self.check_database, "broker": self.check_broker}
        results = await asyncio.gather(*(_probe(name, fn) for name, fn in checks.items()))
        return dict(zip(checks, results, strict=True))


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
