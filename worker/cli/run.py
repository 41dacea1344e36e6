"""`billing worker`, `billing beat`, `billing sandbox`, `billing demo`: running things."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from worker.cli.context import Context, console, err_console
from worker.cli.preflight import check_broker, check_database, ensure_port_free

if TYPE_CHECKING:
    from worker.demo import DemoResult


def worker(
    concurrency: int = typer.Option(4, "-c", "--concurrency",
                                    help="Processes (the stamp pool's, or the one pool's with -Q)."),
    queues: str = typer.Option(None, "-Q", "--queues", show_default=False,
                               help="Run ONE pool on these queues (e.g. stamp,notify,maintenance,"
                                    "intake). Default: a pool each for stamp, notify and "
                                    "maintenance+intake."),
    notify_concurrency: int = typer.Option(2, "--notify-c", help="The notify pool's processes."),
    maintenance_concurrency: int = typer.Option(2, "--maintenance-c",
                                                help="The maintenance+intake pool's processes."),
    loglevel: str = typer.Option(None, "--loglevel", help="Default: BILLING_LOG_LEVEL."),
    name: str = typer.Option(None, "-n", "--hostname", help="Node name, e.g. w1@%h."),
) -> None:
    """Run the Celery workers: stamping, SIF delivery and maintenance in separate pools, so
    a Finkok that hangs cannot hold up SIF deliveries or the sweeper (worker/cli/pools.py)."""
    settings = Context().settings
    check_database(settings)
    check_broker(settings)
    if not queues:
        from worker.cli.pools import default_pools, run_pools

        pools = default_pools(concurrency, notify_concurrency, maintenance_concurrency)
        raise typer.Exit(run_pools(pools, loglevel=loglevel, hostname=name))
    from worker.logging import configure_logging
    from worker.tasks import create_worker_app

    configure_logging(settings)
    app = create_worker_app(settings)
    argv = ["worker", "-P", "prefork", "-c", str(concurrency), "-Q", queues,
            "--loglevel", loglevel or settings.log_level]
    if name:
        argv += ["-n", name]
    app.worker_main(argv)


def beat(loglevel: str = typer.Option(None, "--loglevel")) -> None:
    """Run the beat: the sweeper and the pending-at-SAT poller on their schedule."""
    settings = Context().settings
    check_database(settings)
    check_broker(settings)
    from worker.logging import configure_logging
    from worker.tasks import create_worker_app

    configure_logging(settings)
    app = create_worker_app(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app.start(["beat", "--loglevel", loglevel or settings.log_level,
               "-s", str(settings.data_dir / "celerybeat-schedule")])


def sandbox(
    which: str = typer.Argument(..., help="finkok or sif"),
    port: int = typer.Option(None, "--port"),
) -> None:
    """Run the local Finkok (port 8701) or SIF (port 8702) sandbox in the foreground."""
    if which not in ("finkok", "sif"):
        err_console.print("sandbox must be 'finkok' or 'sif'")
        raise typer.Exit(2)
    port = port or (8701 if which == "finkok" else 8702)
    ensure_port_free("127.0.0.1", port)
    if which == "finkok":
        from worker.sandbox.finkok import main as finkok_main

        finkok_main(["--port", str(port)])
    else:
        from worker.sandbox.sif import main as sif_main

        raise typer.Exit(sif_main(["--port", str(port)]) or 0)


def demo(
    count: int = typer.Option(20, "--count", "-n", min=1, help="How many invoices."),
    data_dir: Path = typer.Option(Path("var/demo"), "--data-dir", help="Wiped and reused."),
    timeout: float = typer.Option(0, "--timeout", help="Seconds to wait (0: 90 + 0.5 per invoice)."),
    keep_running: bool = typer.Option(
        False, "--keep-running", help="Leave the stack up after, print the `export BILLING_…` "
        "lines that point other commands at it; SIGTERM or Ctrl-C stops it."),
) -> None:
    """Run the whole mission end to end on the embedded defaults; exit 0 only if every
    invoice settled as its scenario expects and SIF heard each outcome once."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from worker.cli.signals import sigterm_as_interrupt, wait_for_stop
    from worker.demo import SCENARIOS, export_lines, running_demo

    timeout_s = timeout or 90 + 0.5 * count
    console.print(f"demo: {count} invoices ({len(SCENARIOS)} special scenarios), data in {data_dir}")
    os.environ.setdefault("BILLING_LOG_LEVEL", "INFO")
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console)
    with sigterm_as_interrupt():  # SIGTERM stops every child process, as Ctrl-C does
        progress.start()
        try:
            with running_demo(count, data_dir, timeout_s=timeout_s,
                              progress=progress) as (result, stack):
                progress.stop()
                _print_result(count, result)
                if keep_running:
                    for line in export_lines(stack):
                        typer.echo(line)
                    typer.echo(f"# stack running (logs in {stack.logs}); SIGTERM or Ctrl-C stops it")
                    sys.stdout.flush()
                    wait_for_stop()
                    err_console.print("stopping the stack...")
        finally:
            progress.stop()
    if not result.ok:
        raise typer.Exit(1)


def _print_result(count: int, result: DemoResult) -> None:
    """The scenario table and the checks' verdict (problems on stderr)."""
    from rich.table import Table

    from worker.demo import summary

    table = Table("scenario", "n", "expected", "final", "SIF", "Finkok calls (first)",
                  title=f"billing demo: {count} invoices settled in {result.seconds:.1f} s")
    for row in summary(result):
        table.add_row(*row)
    console.print(table)
    if result.cancellation:
        c = result.cancellation
        console.print(f"cancellation at SAT: {c['reference']} (UUID {c['uuid']}) motivo "
                      f"{c['motivo']} -> {c['state']}, acuse {c['acuse_bytes']} bytes kept",
                      markup=False, soft_wrap=True)
    console.print(f"Finkok sandbox: {result.new_stamps} stamps issued, "
                  f"{result.double_stamped} documents stamped twice")
    console.print(f"PDFs SIF received: {result.pdf_dir}  ({len(list(result.pdf_dir.glob('*.pdf')))} files)")
    for problem in result.problems:
        err_console.print(f"[red]✗[/red] {problem}")
    if result.ok:
        console.print("[green]✓ every invoice settled as expected; SIF holds each outcome[/green]")
    sys.stdout.flush()
