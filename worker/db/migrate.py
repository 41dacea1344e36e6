"""Alembic, configured in code (no alembic.ini needed): `billing db upgrade` calls this."""

from __future__ import annotations

import os
from pathlib import Path

from alembic import command
from alembic.config import Config

import worker

MIGRATIONS_DIR = Path(
    os.environ.get("BILLING_MIGRATIONS_DIR", Path(worker.__file__).resolve().parent.parent / "migrations")
)


def alembic_config(database_url: str) -> Config:
    if not (MIGRATIONS_DIR / "env.py").is_file():
        raise FileNotFoundError(
            f"Alembic migrations not found at {MIGRATIONS_DIR} "
            "(install from a clone with `pip install -e .`, or set BILLING_MIGRATIONS_DIR)"
        )
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation: a literal % in a password must be doubled.
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def current_head() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
