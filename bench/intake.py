"""Intake throughput: `submit` of N distinct sealed invoices on SQLite and PostgreSQL.

    python -m bench.intake [--count 5000] [--threads 4] [--postgres-url URL] [--checks-only]

For each backend it runs `submit` (validate + store + commit, publish disabled) serially,
with a few threads, and from a few processes (one core each, as several API workers),
`submit_many` in batches (one transaction per batch, as the
manifest and batch intake use), and as a baseline a bare single-row INSERT + COMMIT of the same
rows with no validation, so the ratio shows what intake itself costs.

The pre-flight checks (BILLING_INTAKE_CHECKS) side by side: serial `submit` on SQLite with
checks strict and off, and the cost per invoice of the seal verification alone and of
every pre-flight check (``--checks-only`` runs just this part).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, insert

from worker.cfdi.factory import build_invoice
from worker.db.migrate import upgrade
from worker.db.models import Invoice, new_id, utcnow
from worker.db.session import create_db_engine, session_factory
from worker.invoices.intake import Submission, submit, submit_many
from worker.invoices.validation import Checks

console = Console()


def make_invoices(count: int) -> list[bytes]:
    """Distinct documents, each freshly sealed, as producers send them."""
    return [build_invoice(folio=str(i)) for i in range(count)]


def run_submit(engine: Engine, xmls: list[bytes], threads: int, tag: str,
               checks: Checks = "strict") -> float:
    sessions = session_factory(engine)

    def one(i: int) -> None:
        submit(sessions, xmls[i], empresa_ref_id="E-bench", reference=f"{tag}-{i}", checks=checks)

    return _timed(len(xmls), one, threads)


def _submit_slice(url: str, xmls: list[bytes], start: int, step: int, tag: str) -> None:
    engine = create_db_engine(url, pool_size=1)
    sessions = session_factory(engine)
    for i in range(start, len(xmls), step):
        submit(sessions, xmls[i], empresa_ref_id="E-bench", reference=f"{tag}-{i}")
    engine.dispose()


def run_submit_processes(url: str, xmls: list[bytes], processes: int, tag: str) -> float:
    """`submit` from several processes at once, as several API or CLI processes would."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_submit_slice, args=(url, xmls, k, processes, tag))
             for k in range(processes)]
    start = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        if p.exitcode:
            raise SystemExit(f"a submitting process failed (exit {p.exitcode})")
    return len(xmls) / (time.perf_counter() - start)


def run_submit_many(engine: Engine, xmls: list[bytes], batch: int, tag: str) -> float:
    sessions = session_factory(engine)
    start = time.perf_counter()
    for lo in range(0, len(xmls), batch):
        submit_many(
            sessions,
            [Submission(x, "E-bench", f"{tag}-{lo + j}") for j, x in enumerate(xmls[lo : lo + batch])],
        )
    return len(xmls) / (time.perf_counter() - start)


def run_bare_insert(engine: Engine, xmls: list[bytes], threads: int, tag: str) -> float:
    """The floor: one cached single-row INSERT + COMMIT per invoice, no validation."""
    stmt = insert(Invoice.__table__)

    def one(i: int) -> None:
        with engine.begin() as conn:
            conn.execute(stmt, {
                "id": new_id(), "empresa_ref_id": "E-bare", "reference": f"{tag}-{i}",
                "xml": xmls[i], "xml_sha256": hashlib.sha256(xmls[i]).hexdigest(),
                "xml_version": 1, "emisor_rfc": "AAA010101AAA", "receptor_rfc": "XAXX010101000",
                "total": "1.00", "state": "received", "attempts": 0, "must_check_stamped": False,
                "state_changed_at": utcnow(), "created_at": utcnow(), "updated_at": utcnow(),
            })

    return _timed(len(xmls), one, threads)


def _timed(count: int, fn: Callable[[int], None], threads: int) -> float:
    start = time.perf_counter()
    if threads <= 1:
        for i in range(count):
            fn(i)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(fn, range(count)))
    return count / (time.perf_counter() - start)


def run_checks_comparison(xmls: list[bytes], tmp: str) -> dict[str, float]:
    """intake/s with the pre-flight checks strict and off (serial, SQLite, alternating
    rounds so both see the same machine load), and the per-invoice cost of the checks."""
    from worker.cfdi.preflight import preflight
    from worker.cfdi.sealing import verify_seal
    from worker.cfdi.xml import parse

    url = f"sqlite:///{Path(tmp) / 'checks.db'}"
    upgrade(url)
    engine = create_db_engine(url)
    rates: dict[str, list[float]] = {"strict": [], "off": []}
    half = len(xmls) // 2
    for rnd in range(2):
        for mode in ("off", "strict") if rnd % 2 == 0 else ("strict", "off"):
            part = xmls[:half] if rnd == 0 else xmls[half:]
            rates[mode].append(run_submit(engine, part, 1, f"c{mode}{rnd}", checks=mode))
    engine.dispose()
    roots = [parse(x) for x in xmls]
    t0 = time.perf_counter()
    for root in roots:
        verify_seal(root)
    seal_ms = (time.perf_counter() - t0) * 1000 / len(roots)
    t0 = time.perf_counter()
    for root in roots:
        preflight(root)
    all_ms = (time.perf_counter() - t0) * 1000 / len(roots)
    strict, off = (sum(rates[m]) / len(rates[m]) for m in ("strict", "off"))
    table = Table("BILLING_INTAKE_CHECKS", "intake/s (serial, SQLite)", "ms per invoice")
    table.add_row("off", f"{off:,.0f}", f"{1000 / off:.2f}")
    table.add_row("strict", f"{strict:,.0f}", f"{1000 / strict:.2f}")
    table.add_row("seal verification alone", "", f"{seal_ms:.2f}")
    table.add_row("every pre-flight check", "", f"{all_ms:.2f}")
    console.print(table)
    return {"checks_off_per_s": off, "checks_strict_per_s": strict,
            "seal_verify_us": seal_ms * 1000, "preflight_us": all_ms * 1000}


def postgres_database(url: str) -> tuple[str, Callable[[], None]] | None:
    import psycopg
    from sqlalchemy.engine import make_url

    base = make_url(url)
    try:
        admin = psycopg.connect(
            base.set(drivername="postgresql").render_as_string(hide_password=False),
            autocommit=True, connect_timeout=3,
        )
    except psycopg.OperationalError as exc:
        console.print(f"[yellow]PostgreSQL not reachable, skipped: {exc}[/yellow]")
        return None
    name = f"billing_bench_{uuid.uuid4().hex[:8]}"
    admin.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()

    return base.set(database=name).render_as_string(hide_password=False), drop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--batch", type=int, default=100, help="submit_many batch size")
    parser.add_argument("--processes", type=int, default=2, help="submitting processes")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("BILLING_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--checks-only", action="store_true",
                        help="only intake/s with the pre-flight checks strict and off")
    args = parser.parse_args()

    t0 = time.perf_counter()
    xmls = make_invoices(args.count)
    console.print(f"generated {len(xmls)} sealed invoices in {time.perf_counter() - t0:.1f} s")
    if args.checks_only:
        with tempfile.TemporaryDirectory() as tmp:
            checks = run_checks_comparison(xmls, tmp)
        print(f"RESULT {' '.join(f'{k}={v:.0f}' for k, v in checks.items())}")
        return

    table = Table("backend", "mode", "invoices/s", "bare insert/s", "intake/bare")
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        backends: list[tuple[str, str, Callable[[], None] | None]] = [
            ("sqlite", f"sqlite:///{Path(tmp) / 'bench.db'}", None)
        ]
        pg = postgres_database(args.postgres_url)
        if pg:
            backends.append(("postgres", pg[0], pg[1]))
        for name, url, cleanup in backends:
            upgrade(url)
            engine = create_db_engine(url, pool_size=args.threads + 2)
            best = 0.0
            for threads in (1, args.threads):
                mode = "serial" if threads == 1 else f"{threads} threads"
                rate = run_submit(engine, xmls, threads, f"s{threads}")
                bare = run_bare_insert(engine, xmls, threads, f"b{threads}")
                table.add_row(name, mode, f"{rate:,.0f}", f"{bare:,.0f}", f"{rate / bare:.2f}")
                best = max(best, rate)
            engine.dispose()  # no pooled connection may cross the fork
            procs = run_submit_processes(url, xmls, args.processes, f"p{args.processes}")
            table.add_row(name, f"{args.processes} processes", f"{procs:,.0f}", "", "")
            best = max(best, procs)
            batched = run_submit_many(engine, xmls, args.batch, "m")
            table.add_row(name, f"submit_many({args.batch})", f"{batched:,.0f}", "", "")
            results[f"{name}_per_s"] = best
            results[f"{name}_batch_per_s"] = batched
            engine.dispose()
            if cleanup:
                cleanup()
    console.print(table)
    with tempfile.TemporaryDirectory() as tmp:
        results.update(run_checks_comparison(xmls, tmp))
    print(f"RESULT {' '.join(f'{k}={v:.0f}' for k, v in results.items())}")


if __name__ == "__main__":
    main()
