"""PDF rendering benchmark: ``python -m bench.pdf [--runs N]``.

Renders stamped invoices with 1, 10 and 300 conceptos and prints the median time per
PDF, plus seal / stamp / extract timings for the same documents. When ``satcfdi`` is
importable (optional ``bench`` extra) the 10-concepto invoice is also rendered with its
WeasyPrint renderer in the same run, as the baseline. The last line is machine-read:
``RESULT ms_1=... ms_10=... ms_300=...[ satcfdi_ratio_10=...]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from functools import partial

from worker.cfdi.csd import default_emisor_csd, sandbox_pac_csd
from worker.cfdi.extract import extract
from worker.cfdi.factory import build_invoice, mexico_city_now
from worker.cfdi.pdf import render_pdf
from worker.cfdi.sealing import seal, verify_seal
from worker.cfdi.tfd import add_tfd

SIZES = (1, 10, 300)


def _median_ms(fn: Callable[[], object], runs: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def _seal(xml: bytes) -> bytes:
    return seal(xml, default_emisor_csd())


def _stamp(sealed: bytes, fecha: dt.datetime) -> bytes:
    return add_tfd(sealed, uuid=uuid.uuid4(), fecha_timbrado=fecha, pac=sandbox_pac_csd())


def _stamped(conceptos: int, fecha: dt.datetime) -> bytes:
    sealed = build_invoice(conceptos=conceptos, fecha=fecha, seed=conceptos)
    return add_tfd(
        sealed, uuid=uuid.UUID(int=conceptos, version=4), fecha_timbrado=fecha, pac=sandbox_pac_csd()
    )


def _pages(pdf: bytes) -> str:
    try:
        import io

        from pypdf import PdfReader
    except ImportError:
        return "?"
    return str(len(PdfReader(io.BytesIO(pdf)).pages))


def _satcfdi_renderer() -> Callable[[bytes], bytes] | None:
    try:
        from satcfdi import render  # type: ignore[import-not-found]
        from satcfdi.cfdi import CFDI  # type: ignore[import-not-found]
    except Exception:  # noqa: BLE001 - any import problem means "no baseline"
        return None

    def run(xml: bytes) -> bytes:
        pdf: bytes = render.pdf_bytes(CFDI.from_string(xml))  # satcfdi is untyped
        return pdf

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="timed runs per size (300 conceptos: a third)")
    parser.add_argument("--satcfdi-runs", type=int, default=3)
    args = parser.parse_args(argv)

    default_emisor_csd()
    sandbox_pac_csd()  # key generation is not part of any timing
    fecha = mexico_city_now() - dt.timedelta(minutes=1)
    docs = {n: _stamped(n, fecha) for n in SIZES}

    rows = []
    results: dict[int, float] = {}
    for n in SIZES:
        runs = args.runs if n < 300 else max(3, args.runs // 3)
        stamped = docs[n]
        sealed_input = build_invoice(conceptos=n, fecha=fecha, seed=n)
        pdf_ms = _median_ms(partial(render_pdf, stamped), runs)
        seal_ms = _median_ms(partial(_seal, sealed_input), runs)
        verify_ms = _median_ms(partial(verify_seal, sealed_input), runs)
        stamp_ms = _median_ms(partial(_stamp, sealed_input, fecha), runs)
        extract_ms = _median_ms(partial(extract, stamped), runs)
        pdf = render_pdf(stamped)
        pages = _pages(pdf)
        size_kib = len(pdf) / 1024
        results[n] = pdf_ms
        rows.append((n, pdf_ms, pages, size_kib, seal_ms, verify_ms, stamp_ms, extract_ms, runs))

    print(f"Python {sys.version.split()[0]}; medians in ms (runs per size in the last column)")
    header = ("conceptos", "pdf", "pages", "KiB", "seal", "verify", "stamp", "extract", "runs")
    print(" ".join(f"{h:>9}" for h in header))
    for n, pdf_ms, pages, kib, seal_ms, verify_ms, stamp_ms, extract_ms, runs in rows:
        print(f"{n:>9} {pdf_ms:>9.1f} {pages:>9} {kib:>9.1f} {seal_ms:>9.2f} {verify_ms:>9.2f} "
              f"{stamp_ms:>9.2f} {extract_ms:>9.2f} {runs:>9}")

    result = f"RESULT ms_1={results[1]:.1f} ms_10={results[10]:.1f} ms_300={results[300]:.1f}"
    satcfdi = _satcfdi_renderer()
    if satcfdi is None:
        print("satcfdi not importable: no baseline (pip install -e '.[bench]' to add it)")
    else:
        try:
            base_ms = _median_ms(lambda: satcfdi(docs[10]), args.satcfdi_runs, warmup=1)
        except Exception as exc:  # noqa: BLE001 - e.g. WeasyPrint without Pango
            print(f"satcfdi renderer failed, no baseline: {type(exc).__name__}: {exc}")
        else:
            ratio = base_ms / results[10]
            print(f"satcfdi render.pdf_bytes, 10 conceptos: {base_ms:.1f} ms median "
                  f"({args.satcfdi_runs} runs) = {ratio:.1f}x ours")
            result += f" satcfdi_ratio_10={ratio:.1f}"
    print(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
