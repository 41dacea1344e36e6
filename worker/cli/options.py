"""Command-line options shared by `invoices list`, `reprocess` and `resend`."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer

from worker.cli.context import fail

if TYPE_CHECKING:
    from worker.ops.filters import InvoiceFilter, NotificationFilter

WHEN = ("an ISO date/time (2026-11-20, 2026-11-20T08:00; UTC unless an offset is given) "
        "or a duration back from now (30m, 6h, 2d, 1w)")

State = Annotated[list[str] | None, typer.Option(
    "--state", help="Invoice state (repeat for several).", show_default=False)]
Empresa = Annotated[str | None, typer.Option("--empresa", help="empresaRefId.", show_default=False)]
Reference = Annotated[str | None, typer.Option(
    "--reference", help="BDC payment reference.", show_default=False)]
Emisor = Annotated[str | None, typer.Option("--emisor", help="Emisor RFC.", show_default=False)]
Receptor = Annotated[str | None, typer.Option("--receptor", help="Receptor RFC.", show_default=False)]
CancelState = Annotated[list[str] | None, typer.Option(
    "--cancel-state", show_default=False,
    help="The invoice's cancellation at SAT is in this state (repeatable): requested, "
         "sending, in_process, held, cancelled, cancel_rejected, cancel_failed.")]
Code = Annotated[str | None, typer.Option(
    "--code", help="An error code in the invoice's errors (708, CFDI40143, 302, timeout...).",
    show_default=False)]
Since = Annotated[str | None, typer.Option("--since", help=f"From: {WHEN}.", show_default=False)]
Until = Annotated[str | None, typer.Option("--until", help=f"Before: {WHEN}.", show_default=False)]
By = Annotated[str, typer.Option(
    "--by", help="Time that --since/--until and the order use: changed (entered its current "
    "state) or created.")]
Reason = Annotated[str, typer.Option("--reason", help="Why (recorded in the audit log).")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Show what would happen; change nothing.")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
Json = Annotated[bool, typer.Option("--json", help="JSON for scripts.")]


def invoice_filter(
    *, now: datetime, states: list[str] | None, empresa: str | None, reference: str | None,
    emisor: str | None, receptor: str | None, code: str | None, since: str | None,
    until: str | None, by: str, cancel_states: list[str] | None = None,
) -> InvoiceFilter:
    from worker.ops.filters import FilterError, InvoiceFilter

    try:
        return InvoiceFilter.parse(
            states=states, empresa=empresa, reference=reference, emisor=emisor,
            receptor=receptor, code=code, since=since, until=until, by=by, now=now,
            cancel_states=cancel_states,
        )
    except FilterError as exc:
        fail(str(exc), code=2)
        raise  # unreachable: fail() exits


def notification_filter(
    *, now: datetime, states: list[str] | None, results: list[str] | None, status: str | None,
    empresa: str | None, since: str | None, until: str | None,
) -> NotificationFilter:
    from worker.ops.filters import FilterError, NotificationFilter

    try:
        return NotificationFilter.parse(states=states, results=results, status=status,
                                        empresa=empresa, since=since, until=until, now=now)
    except FilterError as exc:
        fail(str(exc), code=2)
        raise


def require_schema(engine: object) -> None:
    """Exit 2 with the fix when the database has no schema yet."""
    from sqlalchemy import inspect

    if not inspect(engine).has_table("invoices"):
        fail("the database has no schema yet: run `billing db upgrade` first", code=2)
