"""`billing invoices list|show`: find invoices and see everything about one."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.text import Text

from worker.cli import options as opt
from worker.cli.context import Context, console, fail
from worker.cli.output import age, cell, dumps, state_text, when

if TYPE_CHECKING:
    from rich.table import Table

app = typer.Typer(help="Find invoices and see everything about one.", no_args_is_help=True)


def _context() -> Context:
    from worker.logging import configure_logging

    ctx = Context()
    configure_logging(ctx.settings)
    opt.require_schema(ctx.engine)
    return ctx


@app.command("list")
def list_(
    state: opt.State = None,
    empresa: opt.Empresa = None,
    reference: opt.Reference = None,
    emisor: opt.Emisor = None,
    receptor: opt.Receptor = None,
    code: opt.Code = None,
    since: opt.Since = None,
    until: opt.Until = None,
    by: opt.By = "changed",
    cancel_state: opt.CancelState = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000, help="Rows per page.")] = 50,
    offset: Annotated[int, typer.Option("--offset", min=0, help="Rows to skip.")] = 0,
    as_json: opt.Json = False,
) -> None:
    """List invoices, newest first (by --by time), with filters and paging."""
    from rich import box
    from rich.table import Table

    from worker.db.models import utcnow
    from worker.ops.queries import count_invoices, list_invoices

    ctx = _context()
    now = utcnow()
    flt = opt.invoice_filter(now=now, states=state, empresa=empresa, reference=reference,
                             emisor=emisor, receptor=receptor, code=code, since=since,
                             until=until, by=by, cancel_states=cancel_state)
    with ctx.sessions() as session:
        rows = list_invoices(session, flt, limit=limit, offset=offset)
        total = count_invoices(session, flt)
    if as_json:
        typer.echo(dumps({"total": total, "offset": offset, "limit": limit,
                          "invoices": [r.as_dict() for r in rows]}))
        return
    table = Table(title=f"invoices {offset + 1 if rows else 0}-{offset + len(rows)} of {total}",
                  box=box.SIMPLE_HEAD, caption="id: the first 8 characters (show accepts them)")
    for name in ("id", "empresa", "reference", "state", "SAT UUID", "tries", "changed", "codes"):
        table.add_column(name, no_wrap=name in ("id", "state", "SAT UUID", "changed"))
    for r in rows:
        table.add_row(cell(r.id[:8]), cell(r.empresa_ref_id), cell(r.reference),
                      state_text(r.state), cell(r.sat_uuid), cell(r.attempts),
                      cell(age((now - r.state_changed_at).total_seconds())), cell(r.error_codes))
    console.print(table)
    if offset + len(rows) < total:
        console.print(f"more: --offset {offset + len(rows)}", style="dim")


@app.command("show")
def show(
    key: Annotated[str, typer.Argument(
        help="Invoice id (or its first 8+ characters), SAT UUID or reference.")],
    empresa: opt.Empresa = None,
    xml: Annotated[Path | None, typer.Option(
        "--xml", help="Write the stamped XML (the exact bytes) to this file.",
        show_default=False)] = None,
    pdf: Annotated[Path | None, typer.Option(
        "--pdf", help="Write the stamped invoice's PDF to this file.", show_default=False)] = None,
    as_json: opt.Json = False,
    acuse: Annotated[Path | None, typer.Option(
        "--acuse", help="Write its cancellation's SAT acuse (the exact bytes Finkok returned).",
        show_default=False)] = None,
) -> None:
    """Everything about one invoice: state and times, Finkok calls, SIF notifications, errors,
    and its cancellation at SAT (if any)."""
    from worker.ops.queries import (
        AmbiguousReference,
        InvoiceNotFound,
        find_invoice,
        invoice_detail,
        stamped_xml,
    )

    ctx = _context()
    with ctx.sessions() as session:
        try:
            invoice = find_invoice(session, key, empresa=empresa)
        except (InvoiceNotFound, AmbiguousReference) as exc:
            fail(str(exc))
            return
        detail = invoice_detail(session, invoice.id)
        stamped = stamped_xml(session, invoice.id) if (xml or pdf) else None
        from worker.cancellations.door import cancellation_of, describe  # issue 16

        cancellation = cancellation_of(session, invoice.id)
        detail["cancellation"] = describe(cancellation) if cancellation is not None else None
        acuse_bytes = cancellation.acuse if cancellation is not None else None
    if acuse and acuse_bytes is None:
        fail(f"invoice {detail['id']} has no cancellation acuse")
    if acuse:
        acuse.write_bytes(acuse_bytes)  # type: ignore[arg-type]
        typer.echo(f"wrote the cancellation acuse to {acuse}", err=True)
    if (xml or pdf) and stamped is None:
        fail(f"invoice {detail['id']} is {detail['state']}: it has no stamped XML")
    if xml:
        xml.write_bytes(stamped)  # type: ignore[arg-type]
    if pdf:
        from worker.cfdi.pdf import render_pdf

        pdf.write_bytes(render_pdf(stamped, ctx.settings.pdf_emisores))  # type: ignore[arg-type]
    if as_json:
        typer.echo(dumps(detail, indent=2))
    else:
        _print_detail(detail)
        if detail["cancellation"]:
            c = detail["cancellation"]
            typer.echo(f"cancellation: {c['state']} motivo {c['motivo']}"
                       + (f" substitute {c['folioSustitucion']}" if c["folioSustitucion"] else "")
                       + f", SAT: {c['satEstado'] or '-'} / {c['satEstatusCancelacion'] or '-'}"
                       + f", acuse {'kept' if c['hasAcuse'] else 'not yet'}")
            if c["state"] == "held" and c["errors"]:
                typer.echo(f"cancellation held on {c['holdKey']}: {c['errors'][0]['message']}; "
                           "it resumes by itself when the breaker closes")
    for path, what in ((xml, "stamped XML"), (pdf, "PDF")):
        if path:
            typer.echo(f"wrote {what} to {path}", err=True)


def _kv(rows: list[tuple[str, Any]]) -> Table:
    from rich.table import Table

    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    for name, value in rows:
        table.add_row(name, value if isinstance(value, Text) else cell(value))
    return table


def _print_detail(d: dict[str, Any]) -> None:
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table

    from worker.db.models import utcnow

    now = utcnow()
    lease = (f"{d['lease_owner']} until {when(d['lease_expires_at'], now)}"
             if d["lease_owner"] else None)
    xml = f"version {d['xml_version']}, {d['xml_bytes']} bytes, sha256 {d['xml_sha256']}"
    if d["must_check_stamped"]:
        check = "yes: the last Finkok call went unanswered"
    elif d["state"] == "stamping":
        check = "not yet: a call may be in flight; if the lease expires, the next worker asks first"
    else:
        check = "no"
    console.print(Panel(_kv([
        ("invoice", d["id"]), ("empresa", d["empresa_ref_id"]), ("reference", d["reference"]),
        ("pedidoga", d["pedidoga"]), ("emisor / receptor", f"{d['emisor_rfc']} / {d['receptor_rfc']}"),
        ("total", d["total"]), ("xml", xml),
        ("state", state_text(d["state"])), ("created", when(d["created_at"], now)),
        ("state changed", when(d["state_changed_at"], now)), ("stamped", when(d["stamped_at"], now)),
        ("next attempt", when(d["next_attempt_at"], now)), ("lease", lease),
        ("stamp claims", d["attempts"]),
        ("must ask `stamped`", check),
        ("SAT UUID", d["sat_uuid"]), ("SAT status", d["sat_status"]),
        ("fecha timbrado", d["fecha_timbrado"]), ("error kind", d["error_kind"]),
        ("SAT deadline", when(d["stamp_deadline_at"], now)),
    ]), title=f"invoice {d['reference']}", expand=False))
    if d["held"]:
        held = d["held"]
        since = f"{held['since']:%Y-%m-%d %H:%M} UTC" if held["since"] else "?"
        console.print(f"held: {held['cause'] or held['breaker']} since {since} "
                      f"(breaker {held['breaker']}, {held['breaker_state']}); it resumes by "
                      "itself when the cause is gone, no NOK was sent", markup=False)

    if d["errors"]:
        title = "why it is held" if d["held"] else "errors (NOK)"
        errors = Table("code", "kind", "message", title=title)
        for e in d["errors"]:
            errors.add_row(cell(e.get("code")), cell(e.get("kind")), cell(e.get("message")))
        console.print(errors)

    calls = Table("#", "started", "operation", "outcome", "codes", "ms", "worker", "message",
                  title=f"Finkok calls ({len(d['stamp_attempts'])})")
    for a in d["stamp_attempts"]:
        calls.add_row(cell(a["id"]), cell(when(a["started_at"], now)), cell(a["operation"]),
                      cell(a["outcome"]), cell(a["codes"]), cell(a["duration_ms"]),
                      cell(a["worker"]), cell(a["message"]))
    console.print(calls)

    for n in d["notifications"]:
        deliveries = Table("#", "started", "HTTP", "ms", "error / SIF answer", "worker")
        for x in n["deliveries"]:
            deliveries.add_row(cell(x["id"]), cell(when(x["started_at"], now)),
                               cell(x["status_code"] if x["status_code"] is not None else "no answer"),
                               cell(x["duration_ms"]), cell(x["error"] or x["response_body"]),
                               cell(x["worker"]))
        header = _kv([
            ("notification", n["id"]), ("status", n["status"]), ("state", state_text(n["state"])),
            ("result", n["result"]), ("attempts", n["attempts"]),
            ("last HTTP status", n["last_status_code"]), ("created", when(n["created_at"], now)),
            ("next attempt", when(n["next_attempt_at"], now)),
            ("delivered", when(n["delivered_at"], now)),
        ])
        console.print(Panel(Group(header, deliveries), title=f"SIF {n['status']}", expand=False))
    if not d["notifications"]:
        console.print(Text("no SIF notification yet", style="dim"))

    if d["audit"]:
        audit = Table("at", "actor", "action", "reason", "details", title="audit")
        for a in d["audit"]:
            audit.add_row(cell(when(a["at"], now)), cell(a["actor"]), cell(a["action"]),
                          cell(a["reason"]), cell(dumps(a["details"]) if a["details"] else None))
        console.print(audit)
