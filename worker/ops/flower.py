"""How Flower is started for our app: ``celery -A worker.tasks flower``, with basic auth.

The credentials travel in the ``FLOWER_BASIC_AUTH`` environment variable (Flower reads
``FLOWER_<option>``), never on the command line, where ``ps`` shows them to every user.
Flower's ``/metrics`` and ``/healthcheck`` stay open even with basic auth, so it binds
to loopback unless told otherwise (publish it through a proxy, or a loopback port).
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: importing this module stays cheap for the CLI
    from worker.settings import Settings

DEFAULT_ADDRESS = "127.0.0.1"
DEFAULT_PORT = 5555
DEFAULT_PASSWORD = "change-me"
# Flower keeps every task in memory: cap it (its default, 100 000, grows large), and
# forget workers that have been offline for five minutes.
MAX_TASKS = 10_000
PURGE_OFFLINE_WORKERS_S = 300


class FlowerConfigError(ValueError):
    """The Flower settings cannot be used (the message never contains the password)."""


def is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def flower_argv(*, address: str = DEFAULT_ADDRESS, port: int = DEFAULT_PORT,
                python: str | None = None) -> list[str]:
    """The command line: no secret in it."""
    return [
        python or sys.executable, "-m", "celery", "-A", "worker.tasks", "flower",
        f"--address={address}", f"--port={port}", f"--max_tasks={MAX_TASKS}",
        f"--purge_offline_workers={PURGE_OFFLINE_WORKERS_S}",
    ]


def flower_env(settings: Settings, base: Mapping[str, str], *, address: str) -> dict[str, str]:
    """``base`` plus FLOWER_BASIC_AUTH=user:password from the settings."""
    user = settings.flower_user
    password = settings.flower_password.get_secret_value()
    if not user or not password:
        raise FlowerConfigError(
            "Flower needs BILLING_FLOWER_USER and BILLING_FLOWER_PASSWORD "
            "(or BILLING_FLOWER_PASSWORD_FILE)"
        )
    if "," in user or "," in password or ":" in user:
        # Flower splits FLOWER_BASIC_AUTH on commas, and user:password on the first colon.
        raise FlowerConfigError(
            "BILLING_FLOWER_USER may not contain ':' or ',', and BILLING_FLOWER_PASSWORD may "
            "not contain ',' (Flower's FLOWER_BASIC_AUTH format)"
        )
    if password == DEFAULT_PASSWORD and not is_loopback(address):
        raise FlowerConfigError(
            f"refusing to serve Flower on {address} with the default password: set "
            "BILLING_FLOWER_PASSWORD or BILLING_FLOWER_PASSWORD_FILE"
        )
    # Other FLOWER_* options pass through; an open API never does.
    env = {k: v for k, v in base.items() if k != "FLOWER_UNAUTHENTICATED_API"}
    env["FLOWER_BASIC_AUTH"] = f"{user}:{password}"
    return env
