"""What every command needs, built once and only when used.

Importing this module is cheap: the settings, the database engine and the Celery app are
imported and built on first use, so `billing --help` never loads SQLAlchemy or Celery. A
fault while building them (invalid settings, a bad database URL) rises to the `billing`
group, which prints it as one line (worker/cli/errors.py).
"""

from __future__ import annotations

import getpass
import sys
from typing import NoReturn

import typer
from rich.console import Console

from worker.resources import Resources

console = Console()
err_console = Console(stderr=True)


class Context(Resources):
    """The command's resources (``worker.resources.Resources``): built on first use."""


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
