"""Finkok client throughput and overhead against the local sandbox (zero latency).

    python -m bench.finkok [--count 300] [--threads 4] [--sandbox-url URL]

The sandbox runs as its own process on this machine (so it does not share the client's
GIL) unless ``--sandbox-url`` points at one already running. Each stamp is a distinct,
freshly sealed invoice (built before timing). Measured:

* stamps/s through ``FinkokClient.stamp`` sequentially and with ``--threads`` threads
  (one client per thread);
* baseline: the same stamps as raw HTTP POSTs of pre-serialized envelopes (no zeep at
  all), so the gap is what the client costs;
* client overhead per call without the network: zeep building and serializing the
  request envelope plus parsing a canned stamp answer into our ``StampResult``.

The last line is ``RESULT stamps_per_s=<sequential client> client_overhead_ms=<per call>``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import requests
from rich.console import Console
from rich.table import Table
from zeep.wsdl.utils import etree_to_string

from worker.cfdi.factory import build_invoice
from worker.finkok import FinkokClient, Kind
from worker.finkok.results import StampResult

USERNAME = "bench@example.com"
PASSWORD = "bench-password"
console = Console()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def _post(url: str, data: dict[str, object]) -> None:
    req = urllib.request.Request(url, data=json.dumps(data).encode(), method="POST")
    urllib.request.urlopen(req, timeout=5).close()


@contextmanager
def sandbox_process() -> Iterator[str]:
    port = _free_port()
    env = dict(os.environ, BILLING_FINKOK_USERNAME=USERNAME, BILLING_FINKOK_PASSWORD=PASSWORD)
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.sandbox.finkok", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _get(url + "/_sandbox/health")
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the sandbox process did not start") from None
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def invoices(count: int, tag: str) -> list[bytes]:
    return [build_invoice(folio=f"{tag}{i}") for i in range(count)]


def run_client(url: str, docs: list[bytes], threads: int) -> float:
    """Stamps/s through FinkokClient; every answer must be a fresh stamp."""
    chunks = [docs[i::threads] for i in range(threads)]
    clients = [FinkokClient(url, USERNAME, PASSWORD, read_timeout_s=30) for _ in range(threads)]
    for c in clients:
        c.zeep_client("stamp")  # built before timing, as a long-lived worker has it

    def work(i: int) -> int:
        ok = 0
        for xml in chunks[i]:
            ok += clients[i].stamp(xml).kind is Kind.OK
        return ok

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        ok = sum(pool.map(work, range(threads)))
    elapsed = time.perf_counter() - start
    for c in clients:
        c.close()
    if ok != len(docs):
        raise RuntimeError(f"only {ok} of {len(docs)} stamps succeeded")
    return len(docs) / elapsed


def run_raw(url: str, docs: list[bytes]) -> float:
    """Baseline: the same stamp requests as pre-serialized envelopes, plain requests.post."""
    template = FinkokClient(url, USERNAME, PASSWORD)
    zc = template.zeep_client("stamp")
    bodies = [
        etree_to_string(zc.create_message(zc.service, "stamp", xml=x, username=USERNAME, password=PASSWORD))
        for x in docs
    ]
    headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '"stamp"'}
    session = requests.Session()
    start = time.perf_counter()
    for body in bodies:
        resp = session.post(url + "/servicios/soap/stamp", data=body, headers=headers, timeout=30)
        if resp.status_code != 200 or b"<s0:UUID>" not in resp.content:
            raise RuntimeError("baseline stamp failed")
    elapsed = time.perf_counter() - start
    session.close()
    template.close()
    return len(docs) / elapsed


def client_overhead_ms(url: str, doc: bytes, rounds: int) -> tuple[float, float, float]:
    """(build+serialize ms, parse ms, total ms) per call, no network involved."""
    client = FinkokClient(url, USERNAME, PASSWORD)
    zc = client.zeep_client("stamp")
    binding = zc.service._binding
    operation = binding.get("stamp")
    body = etree_to_string(zc.create_message(zc.service, "stamp", xml=doc, username=USERNAME,
                                             password=PASSWORD))
    canned = requests.post(url + "/servicios/soap/stamp", data=body, timeout=30,
                           headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '"stamp"'})
    assert canned.status_code == 200
    build = 0.0
    parse = 0.0
    for _ in range(rounds):
        t0 = time.perf_counter()
        etree_to_string(zc.create_message(zc.service, "stamp", xml=doc, username=USERNAME, password=PASSWORD))
        t1 = time.perf_counter()
        result = StampResult.from_zeep(binding.process_reply(zc, operation, canned))
        t2 = time.perf_counter()
        build += t1 - t0
        parse += t2 - t1
    assert result.uuid
    client.close()
    per = 1000.0 / rounds
    return build * per, parse * per, (build + parse) * per


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=300, help="stamps per run")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--sandbox-url", default=None, help="use a running sandbox (its credentials "
                        f"must be {USERNAME} / {PASSWORD})")
    args = parser.parse_args(argv)

    console.print(f"building {args.count * 3 + 1} sealed invoices...")
    seq_docs, thr_docs, raw_docs = (invoices(args.count, t) for t in ("S", "T", "R"))
    overhead_doc = build_invoice(folio="O1")

    with (sandbox_process() if args.sandbox_url is None else _existing(args.sandbox_url)) as url:
        seq = run_client(url, seq_docs, 1)
        thr = run_client(url, thr_docs, args.threads)
        raw = run_raw(url, raw_docs)
        build_ms, parse_ms, total_ms = client_overhead_ms(url, overhead_doc, 200)
        stats = _get(url + "/_sandbox/stats")["totals"]
        if args.sandbox_url is None:
            _post(url + "/_sandbox/reset", {})

    table = Table(title=f"Finkok client vs local sandbox (zero latency, {args.count} stamps per run)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("client, sequential", f"{seq:,.0f} stamps/s")
    table.add_row(f"client, {args.threads} threads", f"{thr:,.0f} stamps/s")
    table.add_row("baseline: raw HTTP POST, sequential", f"{raw:,.0f} stamps/s")
    table.add_row("client overhead: build + serialize request", f"{build_ms:.3f} ms")
    table.add_row("client overhead: parse answer into StampResult", f"{parse_ms:.3f} ms")
    table.add_row("client overhead per call (no network)", f"{total_ms:.3f} ms")
    table.add_row("sandbox: new stamps / double-stamped docs",
                  f"{stats['new_stamps']} / {stats['double_stamped_documents']}")
    console.print(table)
    print(f"RESULT stamps_per_s={seq:.1f} client_overhead_ms={total_ms:.3f}")


@contextmanager
def _existing(url: str) -> Iterator[str]:
    yield url.rstrip("/")


if __name__ == "__main__":
    main()
