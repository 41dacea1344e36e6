"""`billing finkok ...`: the Finkok toolbox for operators, on the configured account.

Read-only: ``datetime``, ``credits``, ``report-uuid``, ``report-total``, ``get-xml``,
``sat-status``, ``stamped``, ``query-pending`` and ``customers``. The registration writes
of an integrator that bills for several companies (``add``, ``edit``, ``assign``,
``switch``) are confirmed like the repairs: ``--dry-run`` shows the plan (and the
customer as Finkok has it now) and changes nothing, a write needs ``--reason``, asks first
unless ``--yes``, and is recorded in the audit log with Finkok's answer.

Every command takes ``--json``. Failures are one line on stderr: Finkok unreachable or
answering garbage (exit 2, naming the setting to check), a refusal in Finkok's answer
(exit 1). The password is never printed. Heavy imports (zeep, SQLAlchemy) happen inside
the commands, so `billing --help` stays light.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from worker.cli import options as opt
from worker.cli.context import Context, console, current_actor
from worker.cli.output import dumps

if TYPE_CHECKING:
    from worker.finkok.client import FinkokClient

T = TypeVar("T")

app = typer.Typer(help="Ask Finkok directly: clock, credits, reports, one CFDI, customers.",
                  no_args_is_help=True)

Rfc = Annotated[str, typer.Argument(help="Emisor (customer) RFC.", show_default=False)]
Uuid = Annotated[str, typer.Argument(help="SAT UUID (folio fiscal).", show_default=False)]
Type = Annotated[str, typer.Option("--type", help="I: CFDI, R: retentions.")]
EmisorOpt = Annotated[str | None, typer.Option(
    "--emisor", help="Emisor RFC (default: the invoice holding the UUID).", show_default=False)]


# --- plumbing ---------------------------------------------------------------------------------


def _call(ctx: Context, operation: str, fn: Callable[[FinkokClient], T]) -> T:
    """Run one Finkok call; a transport failure is one line and exit 2."""
    from worker.finkok.client import FinkokClient
    from worker.finkok.errors import FinkokError

    settings = ctx.settings
    try:
        with FinkokClient.from_settings(settings) as client:
            return fn(client)
    except FinkokError as exc:
        _fail(f"{type(exc).__name__}: {exc} (check BILLING_FINKOK_ENVIRONMENT)", code=2)


def _fail(message: str, code: int) -> NoReturn:
    """One line on stderr (never wrapped), then exit ``code``."""
    typer.echo(f"error: {' '.join(message.split())}", err=True)
    raise typer.Exit(code)


def _out(as_json: bool, data: Any, lines: list[str]) -> None:
    if as_json:
        typer.echo(dumps(data))
        return
    for line in lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)


def _refused(what: str | None, *, as_json: bool, data: Any) -> None:
    """Finkok's answer carried an error: print it (one line) and exit 1."""
    if what:
        if as_json:
            typer.echo(dumps(data))
        _fail(f"Finkok refused: {what}", code=1)


def _asdict(result: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(result)


def _window(since: str | None, until: str | None) -> tuple[str, str, Any]:
    """(date_from, date_to) in Finkok's format (Mexico City time), and the window."""
    from worker.db.models import utcnow
    from worker.ops.filters import FilterError, parse_when
    from worker.ops.reconcile import Window

    now = utcnow()
    try:
        window = Window(parse_when(since or "1d", now), parse_when(until, now) if until else now)
    except FilterError as exc:
        _fail(str(exc), code=2)
    return (*window.finkok(), window)


def _invoice_facts(ctx: Context, uuid: str) -> tuple[str, str, str] | None:
    """(emisor, receptor, total) of the invoice holding ``uuid``, if the database has one."""
    from sqlalchemy import func, inspect, select

    from worker.db.models import Invoice

    if not inspect(ctx.engine).has_table("invoices"):
        return None
    with ctx.sessions() as session:
        row = session.execute(select(Invoice.emisor_rfc, Invoice.receptor_rfc, Invoice.total)
                              .where(func.upper(Invoice.sat_uuid) == uuid.upper())).first()
    return (str(row[0]), str(row[1]), str(row[2])) if row else None


# --- read-only ----------------------------------------------------------------------------------


@app.command("datetime")
def datetime_(zipcode: Annotated[str | None, typer.Option(
        "--zipcode", help="Postal code: Finkok's clock in its zone.", show_default=False)] = None,
        as_json: opt.Json = False) -> None:
    """Finkok's clock (an authenticated call: also proves the credentials)."""
    ctx = Context()
    res = _call(ctx, "datetime", lambda c: c.datetime(zipcode))
    _refused(res.error, as_json=as_json, data=_asdict(res))
    _out(as_json, _asdict(res), [f"Finkok's time: {res.datetime}"])


@app.command("credits")
def credits_(rfc: Rfc, as_json: opt.Json = False) -> None:
    """Stamps left for an RFC (report_credit; an on-demand account reports none)."""
    ctx = Context()
    res = _call(ctx, "report_credit", lambda c: c.report_credit(rfc.upper()))
    _refused(res.error, as_json=as_json, data=_asdict(res))
    lines = [f"{rfc.upper()}: {e.credit} credits (as of {e.date})" for e in res.entries] or [
        f"{rfc.upper()}: no figure (an on-demand account, or not a customer)"]
    _out(as_json, {"taxpayer_id": rfc.upper(), **_asdict(res)}, lines)


@app.command("report-uuid")
def report_uuid(rfc: Rfc, since: opt.Since = None, until: opt.Until = None,
                invoice_type: Type = "I", as_json: opt.Json = False) -> None:
    """UUIDs Finkok stamped for an RFC in a window (default: the last day)."""
    ctx = Context()
    date_from, date_to, _w = _window(since, until)
    res = _call(ctx, "report_uuid",
                lambda c: c.report_uuid(rfc.upper(), date_from, date_to, invoice_type))
    _refused(res.error, as_json=as_json, data=_asdict(res))
    data = {"taxpayer_id": rfc.upper(), "date_from": date_from, "date_to": date_to,
            "invoices": [_asdict(e) for e in res.invoices]}
    _out(as_json, data, [f"{e.uuid}  {e.date}" for e in res.invoices]
         + [f"{len(res.invoices)} UUID(s) for {rfc.upper()} from {date_from} to {date_to} "
            "(Mexico City time)"])


@app.command("report-total")
def report_total(rfc: Rfc, since: opt.Since = None, until: opt.Until = None,
                 invoice_type: Type = "I", as_json: opt.Json = False) -> None:
    """Stamps Finkok charged an RFC in a window (default: the last day)."""
    ctx = Context()
    date_from, date_to, _w = _window(since, until)
    res = _call(ctx, "report_total",
                lambda c: c.report_total(rfc.upper(), date_from, date_to, invoice_type))
    _refused(res.error, as_json=as_json, data=_asdict(res))
    total = sum(e.total or 0 for e in res.entries)
    _out(as_json, {"taxpayer_id": rfc.upper(), "date_from": date_from, "date_to": date_to,
                   "total": total},
         [f"{rfc.upper()}: {total} stamp(s) from {date_from} to {date_to} (Mexico City time)"])


@app.command("get-xml")
def get_xml(uuid: Uuid, emisor: EmisorOpt = None, invoice_type: Type = "I",
            out: Annotated[Path | None, typer.Option(
                "--out", help="Write the XML here (exact text) instead of stdout.",
                show_default=False, dir_okay=False)] = None,
            as_json: opt.Json = False) -> None:
    """A stamped CFDI as Finkok keeps it (the last three months)."""
    ctx = Context()
    rfc = emisor or (_invoice_facts(ctx, uuid) or ("",))[0]
    if not rfc:
        _fail(f"no invoice holds {uuid}: name its emisor with --emisor", code=2)
    res = _call(ctx, "get_xml", lambda c: c.get_xml(uuid, rfc.upper(), invoice_type))
    _refused(res.error or (None if res.xml else "no XML in the answer"), as_json=as_json,
             data=_asdict(res))
    xml = res.xml or ""
    if out is not None:
        out.write_text(xml, encoding="utf-8")
        _out(as_json, {"uuid": uuid, "taxpayer_id": rfc.upper(), "file": str(out),
                       "bytes": len(xml.encode())}, [f"wrote {out} ({len(xml.encode())} bytes)"])
    elif as_json:
        typer.echo(dumps({"uuid": uuid, "taxpayer_id": rfc.upper(), "xml": xml}))
    else:
        typer.echo(xml)


@app.command("sat-status")
def sat_status(uuid: Uuid, emisor: EmisorOpt = None,
               receptor: Annotated[str | None, typer.Option(
                   "--receptor", help="Receptor RFC (default: the invoice's).",
                   show_default=False)] = None,
               total: Annotated[str | None, typer.Option(
                   "--total", help="Total as written in the CFDI (default: the invoice's).",
                   show_default=False)] = None,
               as_json: opt.Json = False) -> None:
    """SAT's status of a CFDI (get_sat_status: Vigente, Cancelado, No Encontrado...)."""
    ctx = Context()
    facts = None if (emisor and receptor and total) else _invoice_facts(ctx, uuid)
    e, r, t = emisor or (facts or ("", "", ""))[0], receptor or (facts or ("", "", ""))[1], \
        total or (facts or ("", "", ""))[2]
    if not (e and r and t):
        _fail(f"no invoice holds {uuid}: give --emisor, --receptor and --total", code=2)
    res = _call(ctx, "get_sat_status", lambda c: c.get_sat_status(e.upper(), r.upper(), uuid, t))
    _refused(res.error, as_json=as_json, data=_asdict(res))
    _out(as_json, {"uuid": uuid, **_asdict(res)}, [
        f"{uuid}: {res.estado} ({res.codigo_estatus}); cancelable: {res.es_cancelable or '-'}; "
        f"cancellation: {res.estatus_cancelacion or '-'}"])


@app.command("stamped")
def stamped(file: Annotated[Path, typer.Argument(
        help="The sealed CFDI (pre-stamp bytes, as sent to stamp).", exists=True,
        dir_okay=False, show_default=False)],
        out: Annotated[Path | None, typer.Option(
            "--out", help="Write the stamped XML here.", show_default=False,
            dir_okay=False)] = None,
        as_json: opt.Json = False) -> None:
    """Does Finkok hold a stamp for these exact bytes? (`stamped`: the stamp, or 603.)"""
    ctx = Context()
    data = file.read_bytes()
    res = _call(ctx, "stamped", lambda c: c.stamped(data))
    summary = {"uuid": res.uuid, "fecha": res.fecha, "cod_estatus": res.cod_estatus,
               "codes": list(res.codes), "kind": str(res.kind)}
    if not res.uuid:
        _refused(f"no stamp for this document ({', '.join(res.codes) or res.cod_estatus})",
                 as_json=as_json, data=summary)
    if out is not None and res.xml:
        out.write_text(res.xml, encoding="utf-8")
    _out(as_json, summary, [f"stamped: {res.uuid} at {res.fecha} ({res.cod_estatus})"]
         + ([f"wrote {out}"] if out is not None else []))


@app.command("query-pending")
def query_pending(uuid: Uuid, as_json: opt.Json = False) -> None:
    """Has Finkok delivered a stamp to SAT? (query_pending: S waiting, F delivered.)"""
    ctx = Context()
    res = _call(ctx, "query_pending", lambda c: c.query_pending(uuid))
    _refused(res.error, as_json=as_json, data={**_asdict(res), "xml": None})
    meaning = {"S": "waiting to be delivered to SAT", "F": "delivered to SAT"}.get(
        (res.status or "").upper(), "unknown status")
    _out(as_json, {**_asdict(res), "xml": None}, [f"{uuid}: {res.status} ({meaning})"])


@app.command("customers")
def customers(rfc: Annotated[str | None, typer.Option(
        "--rfc", help="One customer (registration `get`).", show_default=False)] = None,
        page: Annotated[int, typer.Option("--page", min=1, help="Page of 50.")] = 1,
        as_json: opt.Json = False) -> None:
    """The integrator's customer RFCs: status (A active, S suspended), type, credit."""
    ctx = Context()
    if rfc:
        res = _call(ctx, "get", lambda c: c.registration_get(rfc.upper()))
    else:
        res = _call(ctx, "customers", lambda c: c.registration_customers(page))
    if rfc and not res.users:
        _refused(res.message or "not a customer", as_json=as_json, data=_asdict(res))
    _out(as_json, _asdict(res), [
        f"{u.taxpayer_id}  status {u.status}  "
        f"{'on demand' if u.credit == -1 else f'prepaid, {u.credit} credits'}  "
        f"stamps so far {u.counter}" for u in res.users] + ([res.message] if res.message else []))


# --- registration writes ------------------------------------------------------------------------


def _write(operation: str, rfc: str, plan: str, params: dict[str, Any],
           call: Callable[[FinkokClient], Any], *, reason: str, dry_run: bool, yes: bool,
           as_json: bool) -> None:
    """Plan, confirm, call, audit: the contract of every registration write."""
    rfc = rfc.upper()
    if not dry_run and not reason.strip():
        _fail(f"`finkok {operation}` needs --reason: it is recorded in the audit log", code=2)
    ctx = Context()
    if dry_run:
        now = _call(ctx, "get", lambda c: c.registration_get(rfc))
        current = [_asdict(u) for u in now.users]
        _out(as_json, {"operation": operation, "taxpayer_id": rfc, "params": params,
                       "dry_run": True, "current": current},
             [f"dry run: would {plan}",
              f"now: {current[0] if current else now.message or 'not a customer'}"])
        return
    opt.require_schema(ctx.engine)
    if not yes:
        typer.confirm(f"{plan}?", abort=True, err=True)
    from worker.finkok.client import FinkokClient
    from worker.finkok.errors import FinkokError

    try:
        with FinkokClient.from_settings(ctx.settings) as client:
            res = call(client)
    except FinkokError as exc:  # the call may have reached Finkok: audit the attempt
        what = f"{type(exc).__name__}: {exc}"
        _audit(ctx, operation, rfc, params, reason, {"error": what})
        _fail(f"{what} (check BILLING_FINKOK_ENVIRONMENT)", code=2)
    data = {k: v for k, v in _asdict(res).items() if k != "users"}
    _audit(ctx, operation, rfc, params, reason, data)
    payload = {"operation": operation, "taxpayer_id": rfc, "params": params, **data}
    if getattr(res, "success", True) is False:
        _refused(getattr(res, "message", None) or "refused", as_json=as_json, data=payload)
    _out(as_json, payload, [f"✓ {plan}: {getattr(res, 'message', '') or 'done'}"])


def _audit(ctx: Context, operation: str, rfc: str, params: dict[str, Any], reason: str,
           answer: dict[str, Any]) -> None:
    from worker.db.models import AuditLog

    with ctx.sessions.begin() as session:
        session.add(AuditLog(actor=current_actor(), action=f"finkok-{operation}", reason=reason,
                             details={"taxpayer_id": rfc, **params, "answer": answer}))


TypeUser = Annotated[str, typer.Option("--type", help="O: on demand, P: prepaid.")]


def _user_type(value: str) -> tuple[str, str]:
    """--type as Finkok's code and its name; a one-line error (exit 2) otherwise."""
    t = value.upper()
    if t not in ("O", "P"):
        _fail("--type is O (on demand) or P (prepaid)", code=2)
    return t, "on demand" if t == "O" else "prepaid"


@app.command("add")
def add(rfc: Rfc, type_user: TypeUser = "O", reason: opt.Reason = "", dry_run: opt.DryRun = False,
        yes: opt.Yes = False, as_json: opt.Json = False) -> None:
    """Register a customer RFC under this integrator account (audited)."""
    t, label = _user_type(type_user)
    _write("add", rfc, f"add customer {rfc.upper()} ({label})",
           {"type_user": t}, lambda c: c.registration_add(rfc.upper(), type_user=t),
           reason=reason, dry_run=dry_run, yes=yes, as_json=as_json)


@app.command("edit")
def edit(rfc: Rfc, status: Annotated[str, typer.Option(
        "--status", help="A: activate, S: suspend.", show_default=False)],
        reason: opt.Reason = "", dry_run: opt.DryRun = False, yes: opt.Yes = False,
        as_json: opt.Json = False) -> None:
    """Activate or suspend a customer RFC (audited)."""
    s = status.upper()
    if s not in ("A", "S"):
        _fail("--status is A (activate) or S (suspend)", code=2)
    _write("edit", rfc, f"{'activate' if s == 'A' else 'suspend'} customer {rfc.upper()}",
           {"status": s}, lambda c: c.registration_edit(rfc.upper(), s),
           reason=reason, dry_run=dry_run, yes=yes, as_json=as_json)


@app.command("assign")
def assign(rfc: Rfc, credits: Annotated[int, typer.Argument(
        help="Stamps to add (negative: take away) for a prepaid customer.", show_default=False)],
        reason: opt.Reason = "", dry_run: opt.DryRun = False, yes: opt.Yes = False,
        as_json: opt.Json = False) -> None:
    """Give (or take back) prepaid stamps to a customer RFC (audited)."""
    _write("assign", rfc, f"assign {credits:+d} stamps to {rfc.upper()}", {"credit": credits},
           lambda c: c.registration_assign(rfc.upper(), credits),
           reason=reason, dry_run=dry_run, yes=yes, as_json=as_json)


@app.command("switch")
def switch(rfc: Rfc, type_user: Annotated[str, typer.Option(
        "--type", help="O: on demand, P: prepaid.", show_default=False)],
        reason: opt.Reason = "", dry_run: opt.DryRun = False, yes: opt.Yes = False,
        as_json: opt.Json = False) -> None:
    """Switch a customer RFC between on-demand and prepaid (audited)."""
    t, label = _user_type(type_user)
    _write("switch", rfc, f"switch {rfc.upper()} to {label}",
           {"type_user": t}, lambda c: c.registration_switch(rfc.upper(), t),
           reason=reason, dry_run=dry_run, yes=yes, as_json=as_json)
