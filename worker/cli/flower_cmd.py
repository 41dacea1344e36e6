"""`billing flower`: Flower for our Celery app, with basic auth, on loopback by default."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from worker.cli.context import Context, err_console, fail
from worker.cli.preflight import ensure_port_free
from worker.ops.flower import DEFAULT_ADDRESS, DEFAULT_PORT


def flower(
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="HTTP port.")] = DEFAULT_PORT,
    address: Annotated[str, typer.Option(
        "--address", help="Address to bind. Flower's /metrics is unauthenticated: keep it on "
        "loopback, or behind a proxy.")] = DEFAULT_ADDRESS,
) -> None:
    """Run Flower (`celery -A worker.tasks flower`) with --basic-auth from the settings.

    The credentials go to Flower through its environment (FLOWER_BASIC_AUTH), not its
    command line. Flower is a view: reprocess and resend from the database (`billing
    reprocess`, `billing resend`), not with Flower's retry/revoke.
    """
    from worker.logging import configure_logging
    from worker.ops.flower import (
        FlowerConfigError,
        flower_argv,
        flower_env,
        is_loopback,
    )
    from worker.settings import DEFAULT_FLOWER_PASSWORD

    ctx = Context()
    configure_logging(ctx.settings)
    try:
        env = flower_env(ctx.settings, os.environ, address=address)
    except FlowerConfigError as exc:
        fail(str(exc), code=2)
        return
    if not is_loopback(address):
        err_console.print(f"[yellow]warning:[/yellow] Flower on {address}: its /metrics and "
                          "/healthcheck answer without authentication")
    ensure_port_free(address, port, "--port/--address")
    argv = flower_argv(address=address, port=port)
    err_console.print(f"Flower on http://{address}:{port} (user {ctx.settings.flower_user})",
                      markup=False)
    if ctx.settings.flower_password.get_secret_value() == DEFAULT_FLOWER_PASSWORD:
        err_console.print(f"the password is the default, {DEFAULT_FLOWER_PASSWORD!r}: set "
                          "BILLING_FLOWER_PASSWORD (or BILLING_FLOWER_PASSWORD_FILE) before "
                          "anyone else can reach this port", markup=False)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(argv[0], argv, env)  # Flower becomes this process: signals reach it directly
