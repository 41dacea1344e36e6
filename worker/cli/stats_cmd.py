"""`billing stats`: the numbers to check first, from the database."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from worker.cli import options as opt
from worker.cli.context import Context, console, fail
from worker.cli.output import age, cell, dumps, state_text

if TYPE_CHECKING:
    from worker.ops.stats import Stats


def stats(
    window: Annotated[str, typer.Option(
        "--window", help="Window for Finkok and SIF numbers: 15m, 1h, 1d...")] = "1h",
    as_json: opt.Json = False,
) -> None:
    """Counts per state, oldest waiting rows, Finkok failures, SIF answers, stamps/min."""
    from worker.logging import configure_logging
    from worker.ops.filters import FilterError, parse_duration_s
    from worker.ops.stats import compute_stats

    try:
        window_s = parse_duration_s(window)
    except FilterError as exc:
        fail(str(exc), code=2)
        return
    ctx = Context()
    configure_logging(ctx.settings)
    opt.require_schema(ctx.engine)
    with ctx.sessions() as session:
        result = compute_stats(session, window_s=window_s)
    if as_json:
        typer.echo(dumps(result.as_dict(), indent=2))
        return
    _print(result, window)


def _print(s: Stats, window: str) -> None:
    from rich.table import Table

    states = Table("invoices", "count", "oldest", "id", title="invoices")
    for state, n in s.invoices.items():
        oldest = s.oldest_invoice.get(state)
        states.add_row(state_text(state), cell(n), cell(age(oldest.age_s) if oldest else None),
                       cell(oldest.id if oldest else None))
    console.print(states)
    notes = Table("notifications", "count", "oldest", "id", title="SIF notifications")
    for state, n in s.notifications.items():
        oldest = s.oldest_notification.get(state)
        notes.add_row(state_text(state), cell(n), cell(age(oldest.age_s) if oldest else None),
                      cell(oldest.id if oldest else None))
    console.print(notes)

    finkok = Table("Finkok outcome", "calls",
                   caption=f"last {window}: {s.finkok_calls} calls, {s.finkok_failures} failed")
    for outcome, n in s.finkok_by_outcome.items():
        finkok.add_row(cell(outcome), cell(n))
    console.print(finkok)
    if s.finkok_avg_ms:
        console.print("average ms: " + ", ".join(f"{op} {ms:g}" for op, ms in s.finkok_avg_ms.items()),
                      markup=False)
    if s.finkok_top_codes:
        codes = Table("failure code", "count", caption=f"Finkok, last {window}")
        for code, n in s.finkok_top_codes:
            codes.add_row(cell(code), cell(n))
        console.print(codes)

    sif = Table("SIF HTTP status", "deliveries",
                caption=f"last {window}: {s.sif_deliveries} deliveries")
    for status, n in s.sif_by_status.items():
        sif.add_row(cell(status), cell(n))
    console.print(sif)
    console.print("stamped per minute: " + ", ".join(
        f"last {k}: {v:g}" for k, v in s.stamped_per_min.items()), markup=False)
    if any(s.cancellations.values()):
        console.print("SAT cancellations: " + ", ".join(
            f"{state} {n}" for state, n in s.cancellations.items() if n), markup=False)
    if s.breakers:
        held = Table("held on", "state", "cause", "since", "invoices", "notifications",
                     "cancellations", title="held: breakers that are open (they resume by themselves)")
        for b in s.breakers:
            since = f"{b['since']:%Y-%m-%d %H:%M} UTC" if b["since"] else None
            held.add_row(cell(b["key"]), cell(b["state"]), cell(b["cause"]), cell(since),
                         cell(b["held_invoices"]), cell(b["held_notifications"]),
                         cell(b["held_cancellations"]))
        console.print(held)
