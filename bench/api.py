"""HTTP intake throughput: submissions/s over the API next to in-process `submit`.

    python -m bench.api [--count 1000] [--clients 8] [--no-publish]

Starts `billing api` (uvicorn, one process) on loopback over a fresh SQLite database,
creates an API key, and has N concurrent clients POST distinct sealed invoices
(application/xml, ids as query parameters). Then the same invoices go through
`intake.submit` in this process with N threads, on a second fresh SQLite database.
Both publish the stamp task to a filesystem broker in a temp folder (or neither, with
--no-publish), so the difference is what HTTP, auth and the access log cost.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from worker.api.keys import create_key
from worker.celery_app import STAMP_TASK, create_app
from worker.cfdi.factory import build_invoice
from worker.db.migrate import upgrade
from worker.db.session import create_db_engine, session_factory
from worker.doorbell import bell_for
from worker.invoices.intake import submit
from worker.settings import load_settings

console = Console()
EMPRESA = "E-bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(db_url: str, data_dir: Path, publish: bool) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BILLING_")}
    env.update(BILLING_DATABASE_URL=db_url, BILLING_DATA_DIR=str(data_dir), BILLING_LOG_LEVEL="INFO")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from worker.cli import app; app()", "api",
         "--host", "127.0.0.1", "--port", str(port), "--publish" if publish else "--no-publish"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{base}/readyz").status_code == 200:
                return proc, base
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("billing api did not start")
        time.sleep(0.1)


def run_parallel(count: int, workers: int, one: Callable[[int], None]) -> tuple[float, list[float]]:
    """Run one(i) for every i on `workers` threads; (seconds, per-call latencies in ms)."""
    latencies = [0.0] * count
    lock = threading.Lock()
    next_i = iter(range(count))

    def worker() -> None:
        while True:
            with lock:
                i = next(next_i, None)
            if i is None:
                return
            t0 = time.perf_counter()
            one(i)
            latencies[i] = (time.perf_counter() - t0) * 1000

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        for f in [pool.submit(worker) for _ in range(workers)]:
            f.result()
    return time.perf_counter() - start, latencies


def bench_http(xmls: list[bytes], clients: int, tmp: Path, publish: bool) -> tuple[float, list[float]]:
    db_url = f"sqlite:///{tmp / 'http.db'}"
    upgrade(db_url)
    engine = create_db_engine(db_url)
    key = create_key(session_factory(engine), "bench", [EMPRESA]).key
    engine.dispose()
    proc, base = start_server(db_url, tmp / "http-var", publish)
    local = threading.local()

    def one(i: int) -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(base_url=base, timeout=30)
        res = client.post(
            "/v1/invoices", params={"empresaRefId": EMPRESA, "reference": f"R-{i}"}, content=xmls[i],
            headers={"Content-Type": "application/xml", "X-API-Key": key},
        )
        if res.status_code != 201:
            raise RuntimeError(f"invoice {i}: {res.status_code} {res.text[:200]}")

    try:
        return run_parallel(len(xmls), clients, one)
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def bench_inprocess(xmls: list[bytes], threads: int, tmp: Path, publish: bool) -> tuple[float, list[float]]:
    db_url = f"sqlite:///{tmp / 'inprocess.db'}"
    upgrade(db_url)
    settings = load_settings(database_url=db_url, data_dir=tmp / "inprocess-var", broker_url="filesystem://")
    engine = create_db_engine(db_url, pool_size=threads + 2)
    sessions = session_factory(engine)
    app = create_app(settings)
    ring = bell_for(app, STAMP_TASK) if publish else None

    def one(i: int) -> None:
        result = submit(sessions, xmls[i], empresa_ref_id=EMPRESA, reference=f"R-{i}", publish=ring)
        if result.outcome != "created":
            raise RuntimeError(f"invoice {i}: {result.outcome}")

    try:
        return run_parallel(len(xmls), threads, one)
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=1000, help="invoices per mode")
    parser.add_argument("--clients", type=int, default=8, help="concurrent HTTP clients / threads")
    parser.add_argument("--no-publish", action="store_true", help="store only, no broker message")
    args = parser.parse_args()
    publish = not args.no_publish

    t0 = time.perf_counter()
    xmls = [build_invoice(folio=str(i)) for i in range(args.count)]
    console.print(f"generated {len(xmls)} sealed invoices in {time.perf_counter() - t0:.1f} s "
                  f"(~{statistics.mean(len(x) for x in xmls):.0f} bytes each)")

    rates: dict[str, float] = {}
    table = Table("mode", "concurrency", "invoices", "seconds", "per s", "p50 ms", "p95 ms")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for name, label, run in (
            ("http", "HTTP (uvicorn, loopback)", bench_http),
            ("inprocess", "in-process submit()", bench_inprocess),
        ):
            seconds, lat = run(xmls, args.clients, tmp, publish)
            rates[name] = len(xmls) / seconds
            q = statistics.quantiles(lat, n=100)
            table.add_row(label, str(args.clients), str(len(xmls)), f"{seconds:.2f}",
                          f"{rates[name]:,.0f}", f"{q[49]:.1f}", f"{q[94]:.1f}")
    table.caption = (f"SQLite, publish to a filesystem broker: {'yes' if publish else 'no'}; "
                     f"HTTP/in-process = {rates['http'] / rates['inprocess']:.2f}")
    console.print(table)
    print(f"RESULT http_per_s={rates['http']:.0f} inprocess_per_s={rates['inprocess']:.0f}")


if __name__ == "__main__":
    main()
