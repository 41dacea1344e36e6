"""PDF rendering benchmark: ``python -m bench.pdf [--runs N] [--satcfdi-runs N]``.

Renders stamped invoices with 1, 10 and 300 conceptos and prints the median CPU time
per PDF, plus seal / stamp / extract timings for the same documents. When ``satcfdi`` is
importable (optional ``bench`` extra) its WeasyPrint renderer renders 10-concepto
invoices in the same run, as the baseline. The last line is machine-read:
``RESULT ms_1=... ms_10=... ms_300=...[ satcfdi_ms_10=... satcfdi_ratio_10=...]``.

How it measures, so that the comparison is fair and no per-invoice cache could help:

* every timed render is of an invoice rendered for the first time in the process: each
  size gets its own distinct invoices (seed, UUID and certification time differ), a
  couple more for the warm-up, which renders them before the timing;
* times are CPU seconds of this process (``time.process_time``), not wall time, so other
  load on the machine weighs less; each figure is the median of the runs;
* satcfdi renders the first ``--satcfdi-runs`` of the very 10-concepto invoices ours
  rendered (after warming up on a warm-up invoice), each once; the ratio is the median
  of satcfdi's times over the median of ours (``ms_10``: all the 10-concepto runs, of
  which those invoices are the first). Ours' median on just satcfdi's invoices is
  printed beside it as a cross-check.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from functools import partial

from worker.cfdi.csd import default_emisor_csd, sandbox_pac_csd
from worker.cfdi.extract import extract
from worker.cfdi.factory import build_invoice, mexico_city_now
from worker.cfdi.pdf import render_pdf
from worker.cfdi.sealing import seal, verify_seal
from worker.cfdi.tfd import add_tfd

SIZES = (1, 10, 300)
WARMUP = 2


def _cpu_ms(fn: Callable[[], object]) -> float:
    start = time.process_time()
    fn()
    return (time.process_time() - start) * 1000


def _median_ms(fn: Callable[[], object], runs: int, warmup: int = 2) -> float:
    """Median CPU ms of ``fn`` (the same call each run: for the non-PDF columns)."""
    for _ in range(warmup):
        fn()
    return statistics.median(_cpu_ms(fn) for _ in range(runs))


def _each_once_ms(fn: Callable[[bytes], object], docs: Sequence[bytes]) -> list[float]:
    """CPU ms of ``fn`` on each document, each once, in order."""
    return [_cpu_ms(partial(fn, doc)) for doc in docs]


def _seal(xml: bytes) -> bytes:
    return seal(xml, default_emisor_csd())


def _stamp(sealed: bytes, fecha: dt.datetime) -> bytes:
    return add_tfd(sealed, uuid=uuid.uuid4(), fecha_timbrado=fecha, pac=sandbox_pac_csd())


def _stamped(conceptos: int, fecha: dt.datetime, n: int) -> bytes:
    """The ``n``-th distinct stamped invoice of ``conceptos`` lines."""
    seed = conceptos * 1000 + n
    sealed = build_invoice(conceptos=conceptos, fecha=fecha, seed=seed)
    return add_tfd(sealed, uuid=uuid.UUID(int=seed, version=4),
                   fecha_timbrado=fecha + dt.timedelta(seconds=n), pac=sandbox_pac_csd())


def _pages(pdf: bytes) -> str:
    try:
        import io

        from pypdf import PdfReader
    except ImportError:
        return "?"
    return str(len(PdfReader(io.BytesIO(pdf)).pages))


def _satcfdi_renderer() -> Callable[[bytes], bytes] | None:
    try:  # satcfdi ships no type information: through importlib, its calls are Any
        render = importlib.import_module("satcfdi.render")
        cfdi = importlib.import_module("satcfdi.cfdi")
    except Exception:  # noqa: BLE001 - any import problem means "no baseline"
        return None

    def run(xml: bytes) -> bytes:
        pdf: bytes = render.pdf_bytes(cfdi.CFDI.from_string(xml))
        return pdf

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="timed runs per size (300 conceptos: a third)")
    parser.add_argument("--satcfdi-runs", type=int, default=3)
    args = parser.parse_args(argv)

    default_emisor_csd()
    sandbox_pac_csd()  # key generation is not part of any timing
    fecha = mexico_city_now() - dt.timedelta(hours=1)
    runs_of = {n: args.runs if n < 300 else max(3, args.runs // 3) for n in SIZES}
    # distinct invoices per size: WARMUP for the warm-up, then one per timed run
    docs = {n: [_stamped(n, fecha, i) for i in range(WARMUP + runs_of[n])] for n in SIZES}

    rows = []
    results: dict[int, float] = {}
    ours_10: list[float] = []
    for n in SIZES:
        runs = runs_of[n]
        warm, timed = docs[n][:WARMUP], docs[n][WARMUP:]
        for doc in warm:
            render_pdf(doc)
        samples = _each_once_ms(render_pdf, timed)
        if n == 10:
            ours_10 = samples
        pdf_ms = statistics.median(samples)
        sealed_input = build_invoice(conceptos=n, fecha=fecha, seed=n)
        seal_ms = _median_ms(partial(_seal, sealed_input), runs)
        verify_ms = _median_ms(partial(verify_seal, sealed_input), runs)
        stamp_ms = _median_ms(partial(_stamp, sealed_input, fecha), runs)
        extract_ms = _median_ms(partial(extract, timed[0]), runs)
        pdf = render_pdf(timed[0])
        results[n] = pdf_ms
        rows.append((n, pdf_ms, _pages(pdf), len(pdf) / 1024, seal_ms, verify_ms, stamp_ms, extract_ms, runs))

    print(f"Python {sys.version.split()[0]}; medians of CPU ms, each PDF of a distinct invoice rendered once "
          "(runs per size in the last column)")
    header = ("conceptos", "pdf", "pages", "KiB", "seal", "verify", "stamp", "extract", "runs")
    print(" ".join(f"{h:>9}" for h in header))
    for n, pdf_ms, pages, kib, seal_ms, verify_ms, stamp_ms, extract_ms, runs in rows:
        print(f"{n:>9} {pdf_ms:>9.2f} {pages:>9} {kib:>9.1f} {seal_ms:>9.2f} {verify_ms:>9.2f} "
              f"{stamp_ms:>9.2f} {extract_ms:>9.2f} {runs:>9}")

    result = f"RESULT ms_1={results[1]:.2f} ms_10={results[10]:.2f} ms_300={results[300]:.2f}"
    satcfdi = _satcfdi_renderer()
    if satcfdi is None:
        print("satcfdi not importable: no baseline (pip install -e '.[bench]' to add it)")
    else:
        same = docs[10][WARMUP : WARMUP + args.satcfdi_runs]
        try:
            satcfdi(docs[10][0])  # warm-up (templates, fonts), on a warm-up invoice
            base = _each_once_ms(satcfdi, same)
        except Exception as exc:  # noqa: BLE001 - e.g. WeasyPrint without Pango
            print(f"satcfdi renderer failed, no baseline: {type(exc).__name__}: {exc}")
        else:
            base_ms = statistics.median(base)
            ratio = base_ms / results[10]
            same_ms = statistics.median(ours_10[: len(same)])
            print(f"satcfdi render.pdf_bytes, 10 conceptos: {base_ms:.1f} ms CPU, median of {len(same)} "
                  f"invoices = {ratio:.1f}x ours ({results[10]:.2f} ms); ours on those same invoices: "
                  f"{same_ms:.2f} ms median = {base_ms / same_ms:.1f}x")
            result += f" satcfdi_ms_10={base_ms:.1f} satcfdi_ratio_10={ratio:.1f}"
    print(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
