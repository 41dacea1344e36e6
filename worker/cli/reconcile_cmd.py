"""`billing reconcile`: compare Finkok's ledger (report_uuid) with the database, per emisor
RFC, and adopt orphan stamps into their invoices (worker.ops.reconcile, worker.ops.adopt).

Without --dry-run the findings are stored (``reconcile_runs``: `--last`, the metrics), then
each adoptable orphan is adopted after a confirmation (--yes skips it), audited, one
transaction each, and the notify doorbell rung for its OK. --dry-run reads Finkok and the
database and changes nothing, not even the stored runs. Exit 0 only when every RFC is
clean at the end (no unresolved orphan, no phantom, no Finkok failure).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from worker.cli import options as opt
from worker.cli.context import Context, console, current_actor, err_console, fail
from worker.cli.output import dumps

if TYPE_CHECKING:
    from worker.ops.reconcile import RfcReport
    from worker.ops.reprocess import ActionResult


def reconcile(
    emisor: Annotated[list[str] | None, typer.Option(
        "--emisor", help="Emisor RFC (repeat). Default: BILLING_RECONCILE_RFCS, else the emisor "
        "RFCs of the last 90 days' invoices.", show_default=False)] = None,
    since: opt.Since = None,
    until: opt.Until = None,
    reason: Annotated[str, typer.Option(
        "--reason", help="Why (recorded in the audit log of each adoption).")] = "",
    last: Annotated[bool, typer.Option("--last", help="Show the last stored run of each RFC.")] = False,
    dry_run: opt.DryRun = False,
    yes: opt.Yes = False,
    as_json: opt.Json = False,
) -> None:
    """Prove nothing was lost: Finkok's stamps vs ours, per emisor RFC.

    An orphan (a UUID Finkok lists that no invoice holds) is fetched with get_xml and matched
    to an invoice by its sealed document; a match in failed, rejected, retry_wait or
    received is adopted as that invoice's stamp (-> stamped, OK to SIF), audited. A phantom
    (a stamp of ours Finkok neither lists nor returns through `stamped`) is reported with
    SAT's status. Window: --since/--until (default: the last BILLING_RECONCILE_WINDOW_S).
    """
    from worker.logging import configure_logging

    ctx = Context()
    configure_logging(ctx.settings)
    opt.require_schema(ctx.engine)
    if last:
        _show_last(ctx, as_json)
        return
    from worker.db.models import utcnow
    from worker.finkok.client import FinkokClient
    from worker.ops.filters import FilterError, parse_when
    from worker.ops.reconcile import Window, default_window, run_reconcile, save

    now = utcnow()
    window = default_window(ctx.settings, now)
    try:
        window = Window(parse_when(since, now) if since else window.start,
                        parse_when(until, now) if until else window.end)
    except FilterError as exc:
        fail(str(exc), code=2)
    if window.start >= window.end:
        fail("--since must be before --until", code=2)
    rfcs = [e.strip().upper() for e in emisor] if emisor else None
    with FinkokClient.from_settings(ctx.settings) as client:
        run_id, reports = run_reconcile(ctx.sessions, client, ctx.settings, rfcs=rfcs,
                                        window=window, trigger="cli", store=not dry_run)
    if not reports:
        err_console.print("no emisor RFC to reconcile (name one with --emisor)")
        return
    if not as_json:
        for report in reports:
            _show_report(report)
    adoptable = [o for r in reports for o in r.orphans if o.adoptable]
    results: list[ActionResult] = []
    if adoptable and dry_run:
        if not as_json:
            err_console.print(f"dry run: {len(adoptable)} orphan stamp(s) would be adopted; "
                              "nothing was changed")
    elif adoptable:
        if not yes:
            typer.confirm(f"adopt {len(adoptable)} orphan stamp(s) into their invoices?",
                          abort=True, err=True)
        from worker.celery_app import NOTIFY_TASK
        from worker.doorbell import bell_for
        from worker.ops.adopt import adopt_many

        results = adopt_many(ctx.sessions, adoptable, actor=current_actor(), reason=reason,
                             publish=bell_for(ctx.celery, NOTIFY_TASK))
        adopted = {r.plan.key for r in results if r.done}
        reports = [_with_adopted(r, adopted) for r in reports]
        with ctx.sessions.begin() as session:
            for report in reports:
                if report.adopted:
                    save(session, report, run_id=run_id, trigger="cli", started_at=now)
        if not as_json:
            for r in results:
                line = f"{r.plan.invoice_id} {r.plan.reference}: {r.message}"
                (console if r.done else err_console).print(
                    f"{'✓' if r.done else '✗'} adopt {line}", markup=False, highlight=False, soft_wrap=True)
    if as_json:
        by_uuid = {r.plan.key: r.as_dict() for r in results}
        for report in reports:
            typer.echo(dumps({**report.as_dict(), "dry_run": dry_run, "adoptions": [
                by_uuid[o.uuid] for o in report.orphans if o.uuid in by_uuid]}))
    if not all(r.clean for r in reports):
        raise typer.Exit(1)


def _with_adopted(report: RfcReport, adopted: set[str]) -> RfcReport:
    from dataclasses import replace

    return replace(report, adopted=tuple(o.uuid for o in report.orphans if o.uuid in adopted))


def _show_report(report: RfcReport) -> None:
    w = report.window
    head = (f"{report.emisor_rfc}  {w.start:%Y-%m-%d %H:%M}Z .. {w.end:%Y-%m-%d %H:%M}Z  "
            f"Finkok listed {report.finkok_uuids}, credits used "
            f"{'?' if report.credits_used is None else report.credits_used}, "
            f"our stamps {report.our_stamps}")
    console.print(head, markup=False, highlight=False, soft_wrap=True)
    if report.error:
        err_console.print(f"  ✗ {report.error}", markup=False, highlight=False, soft_wrap=True)
    for o in report.orphans:
        who = f"invoice {o.invoice_id} ref {o.reference} ({o.state})" if o.invoice_id else "no invoice"
        console.print(f"  orphan  {o.uuid} ({o.fecha or '-'}): {who}: {o.match}: {o.note}",
                      markup=False, highlight=False, soft_wrap=True)
    for p in report.phantoms:
        console.print(f"  phantom {p.sat_uuid}: invoice {p.invoice_id} ref {p.reference} ({p.state}): "
                      f"Finkok `stamped` said {p.finkok_stamped}; SAT: {p.sat_estado or '-'}",
                      markup=False, highlight=False, soft_wrap=True)
    if report.clean:
        console.print("  clean: every stamp Finkok lists is ours, every stamp of ours is listed",
                      markup=False, highlight=False, soft_wrap=True)


def _show_last(ctx: Context, as_json: bool) -> None:
    from worker.ops.reconcile import last_runs

    with ctx.sessions() as session:
        rows = last_runs(session)
        if not rows:
            err_console.print("no reconciliation stored yet (run `billing reconcile`)")
            return
        for row in rows:
            data = {c: getattr(row, c) for c in (
                "emisor_rfc", "run_id", "trigger", "started_at", "finished_at", "window_from",
                "window_to", "finkok_uuids", "credits_used", "our_stamps", "orphans",
                "matched", "adopted", "phantoms", "error", "details")}
            if as_json:
                typer.echo(dumps(data))
                continue
            console.print(
                f"{row.emisor_rfc}  {row.finished_at or row.started_at:%Y-%m-%d %H:%M:%S}Z "
                f"({row.trigger})  window {row.window_from:%Y-%m-%d %H:%M}Z .. "
                f"{row.window_to:%Y-%m-%d %H:%M}Z  Finkok listed {row.finkok_uuids}, credits used "
                f"{'?' if row.credits_used is None else row.credits_used}, our stamps "
                f"{row.our_stamps}; orphans {row.orphans} (matched {row.matched}, adopted "
                f"{row.adopted}), phantoms {row.phantoms}"
                + (f"; error: {row.error}" if row.error else ""),
                markup=False, highlight=False, soft_wrap=True)
            for o in (row.details or {}).get("orphans", []):
                console.print(f"  orphan  {o['uuid']}: {o['match']}"
                              f"{' (adopted)' if o.get('adopted') else ''}: {o['note']}",
                              markup=False, highlight=False, soft_wrap=True)
            for p in (row.details or {}).get("phantoms", []):
                console.print(f"  phantom {p['sat_uuid']}: invoice {p['invoice_id']}: Finkok "
                              f"`stamped` said {p['finkok_stamped']}; SAT: {p['sat_estado']}",
                              markup=False, highlight=False, soft_wrap=True)
