"""`billing cancel`: cancel one stamped invoice at SAT, planned, confirmed, audited.

The same door as the API and the broker task (``worker.cancellations.door``). --dry-run
shows what would happen and changes nothing; otherwise it asks first (unless --yes),
records the operator (the OS user) and --reason in the audit log, commits, then rings
``billing.send_cancellation`` (if the broker is down, the beat's poller sends it). Exit 1
when the door refuses, naming why.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from worker.cli import options as opt
from worker.cli.context import Context, console, current_actor, fail
from worker.cli.output import dumps


def cancel(
    key: Annotated[str, typer.Argument(help="The invoice: our id, its SAT UUID or its reference.",
                                       show_default=False)],
    motivo: Annotated[str, typer.Option(
        "--motivo", help="SAT's motivo: 01 errors with a relation (needs --substitute), 02 errors "
        "without one, 03 the operation did not happen, 04 nominative, in a global invoice.",
        show_default=False)],
    substitute: Annotated[str | None, typer.Option(
        "--substitute", help="Motivo 01: the SAT UUID of the stamped invoice of ours that "
        "replaces it.", show_default=False)] = None,
    empresa: opt.Empresa = None,
    reason: opt.Reason = "",
    dry_run: opt.DryRun = False,
    yes: opt.Yes = False,
    as_json: opt.Json = False,
) -> None:
    """Cancel a stamped invoice at SAT (motivo 01-04), once: the same request again is the
    same cancellation. `billing invoices show` follows it until SAT settles it."""
    from worker.cancellations.door import CancelRefused, request_cancellation

    if not dry_run and not reason.strip():
        fail("a cancellation needs --reason: it is recorded in the audit log", code=2)
    ctx = Context()
    from worker.logging import configure_logging

    configure_logging(ctx.settings)
    opt.require_schema(ctx.engine)
    args: dict[str, Any] = dict(motivo=motivo, substitute=substitute, reason=reason or "dry run",
                actor=current_actor(), empresa=empresa)
    try:
        plan = request_cancellation(ctx.sessions, ctx.settings.cancel_csds, key, dry_run=True, **args)
    except CancelRefused as exc:
        fail(f"refused ({exc.reason}): {exc}")
    if dry_run or plan.status == "existing":
        _show(plan.as_dict(), as_json, "dry run: nothing changed" if dry_run else "nothing to do")
        return
    if not yes and not typer.confirm(
            f"Cancel invoice {plan.invoice_id} at SAT with motivo {motivo}?", default=False):
        fail("not confirmed: nothing changed")
    try:
        out = request_cancellation(ctx.sessions, ctx.settings.cancel_csds, key, **args)
    except CancelRefused as exc:
        fail(f"refused ({exc.reason}): {exc}")
    note = None
    if out.ring and out.cancellation_id:
        from worker.cancellations.tasks import ring_send

        if not ring_send(ctx.celery, out.cancellation_id):
            note = "the broker did not take the message; the beat's poller sends it when due"
    _show(out.as_dict(), as_json, note)


def _show(data: dict[str, object], as_json: bool, note: str | None) -> None:
    if as_json:
        console.print_json(dumps({**data, "note": note}))
        return
    console.print(f"{data['status']}: invoice {data['invoiceId']} motivo {data['motivo']}"
                  + (f" substitute {data['folioSustitucion']}" if data["folioSustitucion"] else "")
                  + (f" (cancellation {data['cancellationId']}, {data['state']})"
                     if data["cancellationId"] else ""))
    if note:
        console.print(note)
