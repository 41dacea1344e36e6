"""`billing finkok ...`: the Finkok toolbox (filled in below)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Ask Finkok directly: clock, credits, reports, one CFDI, customers.",
                  no_args_is_help=True)
