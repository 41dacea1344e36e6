"""`billing sample`: freshly sealed test invoices and a manifest, for integrators.

The invoices are sealed with the project's own test emisor (the one `billing demo` uses,
whose CSD the local Finkok knows), dated a minute ago, so they are accepted by intake and
stamped by the sandbox as they are. The manifest is ready for `billing enqueue --manifest`.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Annotated

import typer

from worker.cli.context import console, fail


def sample(
    count: Annotated[int, typer.Option("--count", "-n", min=1, max=10_000,
                                       help="How many invoices.")] = 5,
    out: Annotated[Path, typer.Option("--out", help="Folder for the XML files and the "
                                                    "manifest (created).")] = Path("samples"),
    empresa: Annotated[str, typer.Option("--empresa", help="empresaRefId in the manifest.")]
    = "00000000-0000-1000-0000-000000000001",
    prefix: Annotated[str, typer.Option("--prefix", help="Reference prefix.")] = "SAMPLE-",
) -> None:
    """Write COUNT sealed CFDI 4.0 test invoices and OUT/manifest.csv
    (file,empresaRefId,reference,pedidoga) for `billing enqueue --manifest`."""
    from worker.cfdi.factory import build_invoice

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"cannot create {out}: {exc.strerror} (check --out)", code=2)
    manifest = out / "manifest.csv"
    with manifest.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "empresaRefId", "reference", "pedidoga"])
        for i in range(1, count + 1):
            reference = f"{prefix}{i:05d}"
            path = out / f"{reference}.xml"
            path.write_bytes(build_invoice(folio=f"{i}"))
            writer.writerow([path.name, empresa, reference, f"P{i:05d}"])
    console.print(f"{count} sealed invoices in {out}; enqueue them with:\n"
                  f"  billing enqueue --manifest {manifest}", markup=False, soft_wrap=True)
