"""What a process needs, built once and only when first used: settings, the database, the
Celery producer, the Finkok and SIF clients.

One object per process, the same class everywhere: a worker child (``worker.tasks``), a
CLI command (``worker.cli.context.Context``) and the API server (``worker.api.services``).
Importing this module is cheap and building the object opens nothing: `billing --help`
loads no SQLAlchemy or Celery. A fault while building a part (invalid settings, a bad
database URL) rises to the caller (the CLI prints it as one line). Nothing here crosses a
fork: a worker child builds its own after it starts.
"""

from __future__ import annotations

import logging
from functools import cached_property
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from celery import Celery
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session, sessionmaker

    from worker.finkok.client import FinkokClient
    from worker.settings import Settings
    from worker.sif.client import SifClient

log = logging.getLogger(__name__)


class Resources:
    def __init__(self, settings: Settings | None = None) -> None:
        self._given = settings

    @cached_property
    def settings(self) -> Settings:
        from worker.settings import get_settings

        return self._given or get_settings()

    @cached_property
    def engine(self) -> Engine:
        from worker.db.session import get_engine

        return get_engine(self.settings)

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        from worker.db.session import session_factory

        return session_factory(self.engine)

    @cached_property
    def celery(self) -> Celery:
        """A producer app (rings doorbells; registers no tasks)."""
        from worker.celery_app import create_app

        return create_app(self.settings)

    @cached_property
    def finkok(self) -> FinkokClient:
        from worker.finkok.client import FinkokClient

        return FinkokClient.from_settings(self.settings)

    @cached_property
    def sif(self) -> SifClient:
        from worker.sif.client import SifClient

        return SifClient(self.settings)

    def close(self) -> None:
        """Release what was built (the API server at shutdown; the engine is per process)."""
        if "sif" in self.__dict__:
            self.sif.close()
        if "engine" in self.__dict__:
            self.engine.dispose()

    def warm(self) -> None:
        """Connect before the first task instead of in it. Measured with 24 processes
        starting at once on 2 cores: each one's first task took ~3 s cold and ~1 s warmed
        (a steady task, Finkok at 300 ms, takes ~0.4 s)."""
        try:
            with self.engine.connect():
                pass
            self.finkok.zeep_client("stamp")
            self.sif  # noqa: B018 - builds the HTTP client
        except Exception as exc:  # the first task meets the same problem and reports it
            log.warning("worker process warm-up failed: %s", type(exc).__name__)
