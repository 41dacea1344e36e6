"""`billing config`: the effective settings, secrets masked."""

from __future__ import annotations

import json

import typer

from worker.cli.context import Context, console


def show_config(
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Print the effective settings (secrets masked)."""
    from rich.table import Table

    values = Context().settings.masked()
    if as_json:
        typer.echo(json.dumps(values, indent=2, default=str))
        return
    table = Table("setting", "value", title="billing settings (BILLING_*)")
    for name, value in values.items():
        table.add_row(name, json.dumps(value, default=str) if isinstance(value, dict) else str(value))
    console.print(table)
