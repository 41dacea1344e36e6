"""What every command needs, built once and only when used.

Importing this module is cheap: the settings, the database engine and the Celery app are
imported and built on first use, so `billing --help` never loads SQLAlchemy or Celery. A
fault while building them (invalid settings, a bad database URL) rises to the `billing`
group, which prints it as one line (worker/cli/errors.py).
"""

from __future__ import annotations

import getpass
import sys
from functools import cached_property
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console

if TYPE_CHECKING:
    from celery import Celery
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session, sessionmaker

    from worker.settings import Settings

console = Console()
err_console = Console(stderr=True)


class Context:
    @cached_property
    def settings(self) -> Settings:
        from worker.settings import get_settings

        return get_settings()

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
        from worker.celery_app import create_app

        return create_app(self.settings)


def current_actor() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


def fail(message: str, code: int = 1) -> NoReturn:
    err_console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def is_tty() -> bool:
    return sys.stdout.isatty()
