"""`billing reprocess` and `billing resend`: the two repairs, planned, confirmed, audited.

Both show a plan first (what happens to each row, and why not), change nothing with
--dry-run, ask before changing more than CONFIRM_ABOVE rows (unless --yes), record the
operator (the OS user) and --reason in the audit log, commit each row, then ring the
broker. Exit 1 when any row was refused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from worker.cli import options as opt
from worker.cli.context import Context, console, current_actor, err_console, fail
from worker.cli.output import cell, dumps, state_text

if TYPE_CHECKING:
    from worker.ops.reprocess import ActionResult, Plan

log = logging.getLogger("worker.cli.repair")

CONFIRM_ABOVE = 5
SWEEPER_NOTE = ("the broker did not take {n} message(s); the rows are committed and due, "
                "so the sweeper will ring them within a few seconds of beat's next run")


def _context() -> Context:
    from worker.logging import configure_logging

    ctx = Context()
    configure_logging(ctx.settings)
    opt.require_schema(ctx.engine)
    return ctx


def reprocess(
    keys: Annotated[list[str] | None, typer.Argument(
        help="Invoice ids, SAT UUIDs or references.", show_default=False)] = None,
    state: opt.State = None,
    empresa: opt.Empresa = None,
    reference: opt.Reference = None,
    emisor: opt.Emisor = None,
    receptor: opt.Receptor = None,
    code: opt.Code = None,
    since: opt.Since = None,
    until: opt.Until = None,
    by: opt.By = "changed",
    replace_xml_file: Annotated[Path | None, typer.Option(
        "--replace-xml", help="A corrected, re-sealed CFDI for ONE rejected/failed invoice.",
        show_default=False, exists=True, dir_okay=False)] = None,
    same_xml: Annotated[bool, typer.Option(
        "--same-xml", help="Send a rejected invoice's XML again as it is (when the cause was "
        "fixed elsewhere, e.g. the receptor's data at SAT).")] = False,
    reason: opt.Reason = "",
    dry_run: opt.DryRun = False,
    yes: opt.Yes = False,
    as_json: opt.Json = False,
) -> None:
    """Send rejected/failed invoices back to stamping (never a stamped or pending one).

    Name invoices, or select them with filters (without --state: rejected and failed).
    Attempts are reset, errors cleared; if the last Finkok call went unanswered the
    pipeline asks Finkok `stamped` before it may stamp. A rejected invoice (fiscal-data or
    permanent refusal) needs a corrected XML (--replace-xml) or --same-xml. A reprocess
    needs --reason (the audit log requires one).
    """
    from worker.db.models import utcnow
    from worker.db.states import InvoiceState
    from worker.ops.reprocess import (
        plan_reprocess_filter,
        plan_reprocess_keys,
        reprocess_many,
    )

    has_filter = any((state, empresa and not keys, reference, emisor, receptor, code, since, until))
    if not keys and not has_filter:
        fail("name invoices, or select them with a filter (--state, --code, --since...)", code=2)
    if keys and has_filter:
        fail("give invoice ids or filters, not both (--empresa may narrow references)", code=2)
    if replace_xml_file is not None and same_xml:
        fail("--replace-xml and --same-xml exclude each other", code=2)
    if not dry_run and not reason.strip():
        fail("a reprocess needs --reason: it is recorded in the audit log", code=2)
    ctx = _context()
    if replace_xml_file is not None:
        _reprocess_with_xml(ctx, keys or [], empresa, replace_xml_file, reason, dry_run, as_json)
        return
    with ctx.sessions() as session:
        if keys:
            plans = plan_reprocess_keys(session, keys, empresa=empresa, same_xml=same_xml)
        else:
            flt = opt.invoice_filter(
                now=utcnow(), states=state or [InvoiceState.REJECTED, InvoiceState.FAILED],
                empresa=empresa, reference=reference, emisor=emisor, receptor=receptor,
                code=code, since=since, until=until, by=by,
            )
            plans = plan_reprocess_filter(session, flt, same_xml=same_xml)
    app = ctx.celery
    from worker.celery_app import STAMP_TASK
    from worker.doorbell import bell_for

    _run("reprocess", plans, dry_run=dry_run, yes=yes, as_json=as_json,
         act=lambda ids, progress: reprocess_many(
             ctx.sessions, ids, actor=current_actor(), reason=reason,
             publish=bell_for(app, STAMP_TASK), progress=progress,
             same_xml=same_xml),
         ids_of=lambda p: p.invoice_id, reason=reason)


def _reprocess_with_xml(ctx: Context, keys: list[str], empresa: str | None, path: Path,
                        reason: str, dry_run: bool, as_json: bool) -> None:
    from worker.ops.queries import AmbiguousReference, InvoiceNotFound, find_invoice
    from worker.ops.reprocess import plan_replace_xml, replace_xml

    if len(keys) != 1:
        fail("--replace-xml names exactly one invoice", code=2)
    data = path.read_bytes()
    with ctx.sessions() as session:
        try:
            invoice = find_invoice(session, keys[0], empresa=empresa)
        except (InvoiceNotFound, AmbiguousReference) as exc:
            fail(str(exc))
            return
        plan = plan_replace_xml(session, invoice, data, max_xml_bytes=ctx.settings.max_xml_bytes,
                                key=keys[0])
    if dry_run or not plan.will_change:
        _show_plans([plan], as_json=as_json, dry_run=dry_run)
        if not plan.will_change:
            raise typer.Exit(1)
        return
    app = ctx.celery
    from worker.celery_app import STAMP_TASK
    from worker.doorbell import bell_for

    result = replace_xml(
        ctx.sessions, plan.invoice_id or "", data, actor=current_actor(), reason=reason,
        max_xml_bytes=ctx.settings.max_xml_bytes,
        publish=bell_for(app, STAMP_TASK),
    )
    _report([result], as_json=as_json, action="reprocess", reason=reason)


def resend(
    keys: Annotated[list[str] | None, typer.Argument(
        help="Notification ids, or invoices (id, SAT UUID, reference: their latest notification).",
        show_default=False)] = None,
    state: Annotated[list[str] | None, typer.Option(
        "--state", help="Notification state (repeat). Default with filters: failed.",
        show_default=False)] = None,
    result: Annotated[list[str] | None, typer.Option(
        "--result", help="Last result: unauthorized, not_found, exhausted, bad_request, "
        "invalid_request, delivered... (repeat).", show_default=False)] = None,
    status: Annotated[str | None, typer.Option("--status", help="OK or NOK.",
                                               show_default=False)] = None,
    empresa: opt.Empresa = None,
    since: opt.Since = None,
    until: opt.Until = None,
    reason: opt.Reason = "",
    dry_run: opt.DryRun = False,
    yes: opt.Yes = False,
    as_json: opt.Json = False,
) -> None:
    """Queue SIF notifications again (delivered or failed ones), e.g. after fixing a secret.

    Only an invoice's latest notification is resent, and a NOK only while the invoice is
    still rejected/failed. A resend needs --reason (the audit log requires one).
    """
    from worker.db.models import utcnow
    from worker.db.states import NotificationState
    from worker.ops.reprocess import plan_resend_filter, plan_resend_keys, resend_many

    has_filter = any((state, result, status, empresa, since, until))
    if not keys and not has_filter:
        fail("name notifications or invoices, or select with a filter (--result, --state...)",
             code=2)
    if keys and has_filter:
        fail("give ids or filters, not both", code=2)
    if not dry_run and not reason.strip():
        fail("a resend needs --reason: it is recorded in the audit log", code=2)
    ctx = _context()
    with ctx.sessions() as session:
        if keys:
            plans = plan_resend_keys(session, keys)
        else:
            flt = opt.notification_filter(
                now=utcnow(), states=state or [NotificationState.FAILED], results=result,
                status=status, empresa=empresa, since=since, until=until,
            )
            plans = plan_resend_filter(session, flt)
    app = ctx.celery
    from worker.celery_app import NOTIFY_TASK
    from worker.doorbell import bell_for

    _run("resend", plans, dry_run=dry_run, yes=yes, as_json=as_json,
         act=lambda ids, progress: resend_many(
             ctx.sessions, ids, actor=current_actor(), reason=reason,
             publish=bell_for(app, NOTIFY_TASK),
             progress=progress),
         ids_of=lambda p: p.notification_id, reason=reason)


def _run(
    action: str,
    plans: list[Plan],
    *,
    dry_run: bool,
    yes: bool,
    as_json: bool,
    act: Callable[[list[str], Callable[[ActionResult], None]], list[ActionResult]],
    ids_of: Callable[[Plan], str | None],
    reason: str,
) -> None:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from worker.ops.reprocess import ActionResult

    changing = [p for p in plans if p.will_change]
    refused = [p for p in plans if not p.will_change]
    if not plans:
        err_console.print("nothing matches")
        return
    if dry_run:
        _show_plans(plans, as_json=as_json, dry_run=True)
        return
    if len(changing) > CONFIRM_ABOVE and not yes:
        if not as_json:
            _show_plans(plans, as_json=False, dry_run=True)
        typer.confirm(f"{action} {len(changing)} rows?", abort=True, err=True)
    results: list[ActionResult] = []
    if changing:
        with Progress(TextColumn(action), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err_console, disable=as_json or len(changing) < 2) as progress:
            task = progress.add_task(action, total=len(changing))
            results = act([ids_of(p) or "" for p in changing],
                          lambda _r: progress.advance(task))
    results += [ActionResult(p, False, p.note) for p in refused]
    _report(results, as_json=as_json, action=action, reason=reason)


def _show_plans(plans: list[Plan], *, as_json: bool, dry_run: bool) -> None:
    from rich.table import Table

    if as_json:
        for p in plans:
            typer.echo(dumps({**p.as_dict(), "dry_run": dry_run}))
        return
    n = sum(p.will_change for p in plans)
    table = Table("", "invoice", "reference", "notification", "state", "what happens",
                  title=f"{'dry run: ' if dry_run else ''}{n} would change, {len(plans) - n} refused")
    for p in plans:
        table.add_row("→" if p.will_change else "✗", cell(p.invoice_id or p.key), cell(p.reference),
                      cell(p.notification_id), state_text(p.state), cell(p.note))
    console.print(table)
    if dry_run:
        err_console.print("dry run: nothing was changed")


def _report(results: list[ActionResult], *, as_json: bool, action: str, reason: str) -> None:
    done = [r for r in results if r.done]
    unpublished = [r for r in done if r.published is False]
    for r in results:
        if as_json:
            typer.echo(dumps(r.as_dict()))
        elif r.done:
            names = " ".join(x for x in (r.plan.invoice_id, r.plan.reference,
                                          r.plan.notification_id) if x)
            console.print(f"✓ {names}: {r.message}", markup=False, highlight=False)
        else:
            err_console.print(f"✗ {r.plan.key}: {r.message}", markup=False, highlight=False)
    if unpublished:
        err_console.print(SWEEPER_NOTE.format(n=len(unpublished)), markup=False)
    if not as_json:
        err_console.print(f"{action}: {len(done)} done, {len(results) - len(done)} refused")
    log.debug("%s by %s: %d done, %d refused", action, current_actor(), len(done),
             len(results) - len(done), extra={"reason": reason or None})
    if len(done) < len(results):
        raise typer.Exit(1)
