"""`billing enqueue`: hand sealed CFDIs to intake, one by one or from a manifest."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from worker.cli.context import Context, console, current_actor, err_console, fail

if TYPE_CHECKING:
    from worker.doorbell import Bell as Publish
    from worker.invoices.intake import ItemResult

REFUSED = ("refused", "conflict", "error")
BATCH = 100  # invoices per intake transaction


@dataclass(frozen=True)
class Item:
    source: str  # file path, or manifest:line
    path: Path | None
    empresa_ref_id: str
    reference: str
    pedidoga: str | None


def enqueue(
    files: list[Path] = typer.Argument(None, help="Sealed CFDI 4.0 XML files.", show_default=False),
    empresa: str = typer.Option(None, "--empresa", help="empresaRefId the invoices belong to."),
    reference: str = typer.Option(
        None, "--reference", help="BDC payment reference (one file). Default: each file's name."
    ),
    pedidoga: str = typer.Option(None, "--pedidoga", help="Our folio (optional)."),
    manifest: Path = typer.Option(
        None,
        "--manifest",
        help="CSV (file,empresaRefId,reference,pedidoga) or JSONL manifest of many invoices.",
    ),
    replace: bool = typer.Option(
        False, "--replace", help="Replace the XML of a rejected/failed invoice."
    ),
    reason: str = typer.Option(None, "--reason", help="Why (recorded in the audit log on replace)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per invoice on stdout."),
) -> None:
    """Validate, store and queue invoices. Exit code 1 if any was refused."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    items = list(_items(files or [], empresa, reference, pedidoga, manifest))
    if not items:
        fail("nothing to enqueue: give XML files or --manifest", code=2)
    ctx = Context()
    _require_schema(ctx)
    app = ctx.celery
    from worker.celery_app import STAMP_TASK
    from worker.doorbell import bell_for

    publish = bell_for(app, STAMP_TASK)
    refused = 0
    show_progress = len(items) > 1 and not as_json
    with Progress(
        TextColumn("enqueue"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err_console, disable=not show_progress,
    ) as progress:
        task = progress.add_task("enqueue", total=len(items))
        for lo in range(0, len(items), BATCH):
            chunk = items[lo : lo + BATCH]
            for item, line in zip(chunk, _submit_chunk(ctx, chunk, replace, reason, publish), strict=True):
                if line["status"] in REFUSED:
                    refused += 1
                    typer.echo(
                        f"{item.source}: {line['status']} ({line['reason']}): {line['message']}",
                        err=True,
                    )
                if as_json:
                    typer.echo(json.dumps(line))
                elif not show_progress and line["status"] not in REFUSED:
                    console.print(f"{item.source}: {line['status']} invoice {line['invoice_id']}",
                                  markup=False, highlight=False)
            progress.advance(task, len(chunk))
    if show_progress:
        err_console.print(f"{len(items) - refused} accepted, {refused} refused")
    if refused:
        raise typer.Exit(1)


def _submit_chunk(
    ctx: Context, chunk: list[Item], replace: bool, reason: str | None, publish: Publish
) -> list[dict[str, object]]:
    """Read the files and submit them together; one result line per item, in order."""
    from worker.invoices.intake import Submission, submit_many

    lines: list[dict[str, object] | None] = [None] * len(chunk)
    readable: list[tuple[int, Submission]] = []
    for i, item in enumerate(chunk):
        try:
            data = item.path.read_bytes() if item.path else b""
        except OSError as exc:
            lines[i] = {"source": item.source, "reference": item.reference, "status": "error",
                        "reason": "unreadable", "message": exc.strerror or str(exc)}
            continue
        readable.append((i, Submission(data, item.empresa_ref_id, item.reference, item.pedidoga)))
    results = submit_many(
        ctx.sessions, [s for _, s in readable], replace=replace,
        max_xml_bytes=ctx.settings.max_xml_bytes, publish=publish, actor=current_actor(),
        reason=reason, checks=ctx.settings.intake_checks,
    )
    for (i, _), result in zip(readable, results, strict=True):
        lines[i] = _line(chunk[i], result)
    return [line for line in lines if line is not None]


def _line(item: Item, result: ItemResult) -> dict[str, object]:
    from worker.invoices.intake import InvoiceConflict, InvoiceRefused

    base: dict[str, object] = {"source": item.source, "reference": item.reference}
    if isinstance(result, InvoiceRefused):
        return {**base, "status": "refused", "reason": result.reason, "message": result.message}
    if isinstance(result, InvoiceConflict):
        return {**base, "status": "conflict", "reason": "conflict", "message": str(result),
                "invoice_id": result.invoice_id}
    return {**base, "status": result.outcome, "invoice_id": result.invoice_id,
            "state": result.state, "published": result.published}


def _items(
    files: list[Path], empresa: str | None, reference: str | None, pedidoga: str | None,
    manifest: Path | None,
) -> Iterator[Item]:
    if files:
        if not empresa:
            fail("--empresa is required with XML files", code=2)
        if reference and len(files) > 1:
            fail("--reference names one invoice: give one file, or omit it to use file names", code=2)
        for path in files:
            yield Item(str(path), path, empresa or "", reference or path.stem, pedidoga)
    if manifest:
        yield from _manifest_items(manifest, empresa)


def _manifest_items(manifest: Path, default_empresa: str | None) -> Iterator[Item]:
    try:
        text = manifest.read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"{manifest}: {exc.strerror}", code=2)
    base = manifest.parent
    if manifest.suffix.lower() in (".jsonl", ".ndjson"):
        rows: list[dict[str, str]] = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                fail(f"{manifest}:{n}: not JSON ({exc.msg})", code=2)
    else:
        rows = list(csv.DictReader(text.splitlines()))
    for n, row in enumerate(rows, 1):
        file = (row.get("file") or "").strip()
        if not file:
            fail(f"{manifest}: row {n} has no 'file'", code=2)
        path = Path(file) if Path(file).is_absolute() else base / file
        # Ids go to intake as written: " R1" is refused there, as it is from --reference
        # and the API, rather than quietly becoming a different reference here.
        yield Item(
            f"{manifest.name}:{n}:{file}",
            path,
            row.get("empresaRefId") or default_empresa or "",
            row.get("reference") or "",
            row.get("pedidoga") or None,
        )


def _require_schema(ctx: Context) -> None:
    from sqlalchemy import inspect

    if not inspect(ctx.engine).has_table("invoices"):
        fail("the database has no schema yet: run `billing db upgrade` first", code=2)
