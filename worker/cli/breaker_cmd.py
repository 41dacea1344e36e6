"""`billing breaker list|reset`: the outage breakers shared by every worker.

``list`` shows every breaker that is not closed (``--all``: every one), its cause, since
when, and how many invoices and SIF notifications wait on it. ``reset KEY`` closes one by
hand (audited, like reprocess): its held rows resume at the sweeper's bounded rate, and if
the cause is still there the next call opens it again at once.
"""

from __future__ import annotations

from typing import Annotated

import typer

from worker.cli import options as opt
from worker.cli.context import Context, console, current_actor, fail
from worker.cli.output import cell, dumps

app = typer.Typer(help="Outage breakers: what holds invoices and notifications, and why.",
                  no_args_is_help=True)


@app.command("list")
def list_breakers(
    show_all: Annotated[bool, typer.Option("--all", help="Closed breakers too.")] = False,
    as_json: opt.Json = False,
) -> None:
    """Open breakers, their cause and what they hold (exit 0 either way)."""
    from worker.db.breakers import all_breakers
    from worker.ops.stats import held_by_cause

    ctx = Context()
    opt.require_schema(ctx.engine)
    with ctx.sessions() as session:
        rows = held_by_cause(session)
        if show_all:
            listed = {r["key"] for r in rows}
            rows += [{"key": b.key, "scope": "", "state": b.state, "cause": b.cause,
                      "since": b.opened_at, "held_invoices": 0, "held_notifications": 0,
                      "held_cancellations": 0}
                     for b in all_breakers(session) if b.key not in listed]
    if as_json:
        typer.echo(dumps(rows, indent=2))
        return
    if not rows:
        console.print("no breaker is open; nothing is held")
        return
    from rich.table import Table

    table = Table("breaker", "state", "cause", "since", "invoices", "notifications",
                  "cancellations",
                  title="breakers (held rows resume by themselves when the cause is gone)")
    for r in rows:
        since = f"{r['since']:%Y-%m-%d %H:%M} UTC" if r["since"] else None
        table.add_row(cell(r["key"]), cell(r["state"]), cell(r["cause"]), cell(since),
                      cell(r["held_invoices"]), cell(r["held_notifications"]),
                      cell(r["held_cancellations"]))
    console.print(table)


@app.command("reset")
def reset(
    key: Annotated[str, typer.Argument(help="The breaker, as `billing breaker list` names it.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded in the audit log).",
                                        show_default=False)] = "",
    dry_run: opt.DryRun = False,
    yes: opt.Yes = False,
) -> None:
    """Close one breaker by hand (audited): its held rows resume at a bounded rate."""
    from worker.db import breakers
    from worker.db.models import Breaker

    if not dry_run and not reason.strip():
        fail("a reset needs a reason (--reason): it is recorded in the audit log", code=2)
    ctx = Context()
    opt.require_schema(ctx.engine)
    with ctx.sessions() as session:
        row = session.get(Breaker, key)
    if row is None:
        fail(f"no breaker {key!r}; `billing breaker list --all` shows them", code=1)
        return
    if row.state == breakers.CLOSED:
        console.print(f"{key} is already closed; nothing to do")
        return
    console.print(f"{key} ({row.state}: {row.cause}) -> closed; held rows resume")
    if dry_run:
        console.print("dry run: nothing changed")
        return
    if not yes and not typer.confirm("Close it?", default=False):
        raise typer.Exit(1)
    with ctx.sessions.begin() as session:
        closed = breakers.reset(session, key, actor=current_actor(), reason=reason)
    if not closed:
        fail(f"{key} changed meanwhile; look again", code=1)
    console.print(f"✓ {key} closed")
