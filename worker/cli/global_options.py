"""The options every `billing` command takes before its name: --debug, --version."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import typer

DISTRIBUTION = "rupture-billing-worker"


def package_version() -> str:
    """The installed package's version ("unknown" when run from an uninstalled tree)."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"billing {package_version()}")
        raise typer.Exit(0)


def global_options(
    debug: bool = typer.Option(
        False, "--debug", envvar="BILLING_DEBUG",
        help="Show the full traceback of an infrastructure fault instead of one line."),
    show_version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True,
        help="Print the package version and exit."),
) -> None:
    """Queue-driven CFDI 4.0 billing worker: stamp through Finkok, report to SIF."""
