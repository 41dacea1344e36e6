"""`billing api` (serve the HTTP intake API) and `billing api-keys create|revoke|list`."""

from __future__ import annotations

import typer

from worker.cli.context import Context, console, err_console, fail
from worker.cli.preflight import ensure_port_free

keys_app = typer.Typer(help="API keys for the HTTP intake API.", no_args_is_help=True)


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    publish: bool = typer.Option(
        True, "--publish/--no-publish",
        help="Ring the broker after each new invoice; --no-publish leaves it to the sweeper.",
    ),
) -> None:
    """Serve the HTTP intake API (uvicorn) for ERPs: POST /v1/invoices and reads."""
    ensure_port_free(host, port)
    from worker.api import create_api
    from worker.api.server import serve as run_server
    from worker.logging import configure_logging

    settings = Context().settings
    configure_logging(settings)
    run_server(create_api(settings, publish=publish), host, port)


@keys_app.command("create")
def create(
    name: str = typer.Option(..., "--name", help="Who the key is for (e.g. the ERP)."),
    empresa: list[str] = typer.Option(
        None, "--empresa", help="An empresaRefId the key may submit and read for (repeatable)."
    ),
    all_empresas: bool = typer.Option(False, "--all-empresas", help="Every empresaRefId."),
) -> None:
    """Create a key and print it ONCE (only its SHA-256 is stored)."""
    from worker.api.keys import check_empresas, create_key

    try:
        empresas = check_empresas(list(empresa or []), all_empresas)
    except ValueError as exc:
        fail(str(exc), code=2)
        return
    ctx = Context()
    try:
        new = create_key(ctx.sessions, name, empresas)
    except ValueError as exc:
        fail(str(exc), code=2)
        return
    scope = "all" if isinstance(new.empresa_ref_ids, str) else ", ".join(new.empresa_ref_ids)
    err_console.print(f"created API key {new.id} ({new.name}) for empresaRefId: {scope}")
    err_console.print("store the key now: it is not shown again")
    typer.echo(new.key)


@keys_app.command("revoke")
def revoke(key_id: str = typer.Argument(..., help="The key's id (or prefix).")) -> None:
    """Revoke a key: every request with it is refused (401) from now on."""
    from worker.api.keys import revoke_key

    row = revoke_key(Context().sessions, key_id)
    if row is None:
        fail(f"no API key {key_id!r}")
        return
    console.print(f"API key {row.id} ({row.name}) revoked at {row.revoked_at:%Y-%m-%d %H:%M:%S} UTC")


@keys_app.command("list")
def list_(
    as_json: bool = typer.Option(False, "--json", help="One JSON object per key."),
) -> None:
    """List keys: id, name, prefix, empresaRefIds, dates. Never the secrets."""
    import json

    from rich.table import Table

    from worker.api.keys import list_keys

    rows = list_keys(Context().sessions)
    if as_json:
        for row in rows:
            typer.echo(json.dumps({
                "id": row.id, "name": row.name, "prefix": row.prefix,
                "empresaRefIds": row.empresa_ref_ids, "createdAt": row.created_at.isoformat(),
                "lastUsedAt": row.last_used_at and row.last_used_at.isoformat(),
                "revokedAt": row.revoked_at and row.revoked_at.isoformat(),
            }))
        return
    table = Table("id", "name", "prefix", "empresaRefIds", "created", "last used", "revoked")
    for row in rows:
        scope = (
            row.empresa_ref_ids if isinstance(row.empresa_ref_ids, str) else ", ".join(row.empresa_ref_ids)
        )
        table.add_row(
            row.id, row.name, row.prefix, scope, f"{row.created_at:%Y-%m-%d %H:%M}",
            f"{row.last_used_at:%Y-%m-%d %H:%M}" if row.last_used_at else "-",
            f"{row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "-",
        )
    console.print(table)
