"""`billing metrics`: the Prometheus endpoint on its own, for deployments without the API."""

from __future__ import annotations

from typing import Annotated

import typer

from worker.cli.context import Context, err_console, fail

DEFAULT_PORT = 9464
DEFAULT_ADDRESS = "127.0.0.1"


def metrics(
    port: Annotated[int, typer.Option("--port", min=0, max=65535,
                                      help="HTTP port (0: any free port).")] = DEFAULT_PORT,
    address: Annotated[str, typer.Option(
        "--address", help="Address to bind. The endpoint has no authentication: keep it on "
        "loopback or an internal network.")] = DEFAULT_ADDRESS,
) -> None:
    """Serve Prometheus metrics read from the database at each scrape (GET /metrics).

    Runs in the foreground until stopped. Any number of these (or `billing api`'s
    /metrics) report the same figures: they come from the database, not from this process.
    """
    from prometheus_client import start_wsgi_server

    from worker.db.session import get_engine
    from worker.ops.metrics import create_registry
    from worker.settings import mask_url_password

    ctx = Context()
    settings = ctx.settings
    from worker.logging import configure_logging

    configure_logging(settings)
    engine = get_engine(settings)
    where = mask_url_password(settings.database_url)
    try:
        with engine.connect():
            pass
    except Exception as exc:  # serve anyway: billing_database_up 0 tells the scraper
        err_console.print(f"[yellow]warning:[/yellow] database at {where} not reachable "
                          f"({type(exc).__name__}); check BILLING_DATABASE_URL. Serving "
                          "billing_database_up 0 until it answers.", markup=True)
    try:
        server, thread = start_wsgi_server(port, address, registry=create_registry(engine))
    except OSError as exc:
        fail(f"cannot listen on {address}:{port}: {exc.strerror or exc}; choose another "
             "--port or --address", code=2)
        return
    bound = server.server_address[1]
    err_console.print(f"metrics on http://{address}:{bound}/metrics (database {where})",
                      markup=False)
    try:
        thread.join()
    except KeyboardInterrupt:
        server.shutdown()
