"""What every command needs, built once and only when used."""

from __future__ import annotations

import getpass
import sys
from functools import cached_property

import typer
from celery import Celery
from rich.console import Console
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from worker.settings import Settings, get_settings

console = Console()
err_console = Console(stderr=True)


class Context:
    @cached_property
    def settings(self) -> Settings:
        try:
            return get_settings()
        except Exception as exc:  # pydantic names the bad variable; show it without a trace
            err_console.print(f"[red]configuration error:[/red] {exc}")
            raise typer.Exit(2) from None

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


def fail(message: str, code: int = 1) -> None:
    err_console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def is_tty() -> bool:
    return sys.stdout.isatty()
