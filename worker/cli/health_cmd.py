"""`billing health`: is everything the worker needs there? Exit 0 only when all is well."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from worker.cli import options as opt
from worker.cli.context import Context, console, fail
from worker.cli.output import dumps
from worker.ops.health import (
    COMPONENTS,
    DEFAULT_TIMEOUT_S,
    Check,
    HealthInputError,
    run_checks,
    select_components,
)

LIST_HELP = f"Comma-separated, of: {', '.join(COMPONENTS)}."


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def health(
    only: Annotated[str | None, typer.Option("--only", help=f"Check only these. {LIST_HELP}",
                                             show_default=False)] = None,
    skip: Annotated[str | None, typer.Option("--skip", help=f"Do not check these. {LIST_HELP}",
                                             show_default=False)] = None,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1,
                                           help="Seconds each check may take.")] = DEFAULT_TIMEOUT_S,
    as_json: opt.Json = False,
) -> None:
    """One line per component (database at the migration head, broker, workers answering a
    ping, the beat's last sweep, Finkok credentials, SIF, credits). Exit 0 only when every
    checked component is well; 1 otherwise, each failing line naming the setting to check."""
    try:
        components = select_components(_split(only), _split(skip))
    except HealthInputError as exc:
        fail(str(exc), code=2)
        return
    if not components:
        fail("--only/--skip left nothing to check", code=2)
    settings = Context().settings
    checks = run_checks(settings, components, timeout_s=timeout)
    healthy = all(c.ok for c in checks)
    if as_json:
        typer.echo(dumps({"ok": healthy, "checks": [c.as_dict() for c in checks]}, indent=2))
    else:
        for check in checks:
            console.print(_line(check), soft_wrap=True)
    if not healthy:
        raise typer.Exit(1)


def _line(check: Check) -> Text:
    line = Text()
    line.append("ok  " if check.ok else "FAIL", style="green" if check.ok else "bold red")
    line.append(f" {check.component:<9} {check.detail}")
    if not check.ok and check.setting:
        line.append(f" (check {check.setting})", style="yellow")
    return line
