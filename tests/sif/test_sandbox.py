"""The SIF sandbox itself: SIF's exact answers, its switches, its control API over HTTP,
thread safety, and running it as a process."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from worker.sandbox.sif import BODY_401, BODY_404, BODY_409, SifSandbox
from worker.sif.client import SifClient
from worker.sif.payload import build_nok, build_ok

from .conftest import EMPRESA, SECRET, make_settings

REPO_ROOT = Path(__file__).resolve().parents[2]
UUID = "1044D724-23CB-43A2-9AA7-C08B73FF4381"
HEADERS = {"secret": SECRET, "generatorId": "SIF_TEST", "Content-Type": "application/json"}


def ok(reference: str = "0016921514") -> dict[str, Any]:
    return build_ok(reference=reference, sat_uuid=UUID, pedidoga="1", stamped_xml=b"<x/>", pdf=b"%PDF",
                    datos_fiscales={"rfc": "RARA760229C54", "usoCfdi": "G03", "regimenFiscal": "612",
                                    "codigoPostal": "21200"})


def nok(reference: str = "0016921514") -> dict[str, Any]:
    return build_nok(reference=reference, invoice_id=UUID, pedidoga=None,
                     errors=[{"code": "301", "message": "XML mal formado", "kind": "permanent"}])


def put(
    sif: SifSandbox, body: Any, *, empresa: str = EMPRESA, headers: dict[str, str] | None = None
) -> httpx.Response:
    """A raw PUT, bypassing our client's own checks (to see what SIF does with bad input)."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.put(f"{sif.url}/empresas/{empresa}/documents/billing/status",
                     content=content, headers=headers or HEADERS)


def test_answers_are_sifs_exact_bodies(sif: SifSandbox) -> None:
    assert put(sif, nok(), headers={**HEADERS, "secret": "nope"}).json() == BODY_401
    assert BODY_401 == {"error": {"code": 401, "message": "Token de autorización inválido."}}
    assert put(sif, nok()).status_code == 204
    first = put(sif, ok())
    assert (first.status_code, first.content) == (204, b"")
    again = put(sif, nok())
    assert (again.status_code, again.json()) == (409, BODY_409)
    assert BODY_409["error"]["message"] == "El documento ya cuenta con un estatus de facturación correcta"
    assert sif.statuses(EMPRESA, "0016921514") == ["NOK", "OK"]
    sif.configure(known_empresas=["another"])
    missing = put(sif, nok("X"))
    assert (missing.status_code, missing.json()) == (404, BODY_404)
    assert BODY_404 == {"error": {"code": 404, "message": "No se encontro el documento"}}


def test_400_names_what_is_wrong(sif: SifSandbox) -> None:
    body = {**nok(), "errorDatosFiscales": False, "status": "MAYBE"}
    response = put(sif, body)
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert "errorDatosFiscales" in message and "status" in message
    assert put(sif, b"{not json").json()["error"]["message"] == "el cuerpo no es JSON válido"
    wrong_type = put(sif, nok(), headers={**HEADERS, "Content-Type": "text/plain"})
    assert wrong_type.status_code == 400 and "application/json" in wrong_type.text
    no_generator = put(sif, nok(), headers={k: v for k, v in HEADERS.items() if k != "generatorId"})
    assert no_generator.status_code == 400 and "generatorId" in no_generator.text
    assert sif.statuses(EMPRESA, "0016921514") == []  # nothing refused was taken
    assert [r["code"] for r in sif.received()] == [400, 400, 400, 400]


def test_routes_and_methods(sif: SifSandbox) -> None:
    assert httpx.put(f"{sif.root_url}/other/path", content=b"{}").status_code == 404
    assert httpx.get(f"{sif.url}/empresas/{EMPRESA}/documents/billing/status").status_code == 405


def test_control_api_over_http(sif: SifSandbox) -> None:
    root = sif.root_url
    config = httpx.post(f"{root}/_sandbox/config", json={"faults": ["503", "404"], "latency_s": 0}).json()
    assert config["faults"] == ["503", "404"] and config["secret"] == "********"
    assert SECRET not in httpx.get(f"{root}/_sandbox/config").text
    assert [put(sif, nok(f"R{i}")).status_code for i in range(3)] == [503, 404, 204]
    received = httpx.get(f"{root}/_sandbox/received").json()
    assert [(r["seq"], r["reference"], r["code"], r["fault"]) for r in received["requests"]] == [
        (1, "R0", 503, "503"), (2, "R1", 404, "404"), (3, "R2", 204, None),
    ]
    assert received["statuses"] == {f"{EMPRESA}/R2": ["NOK"]}
    only = httpx.get(f"{root}/_sandbox/received", params={"reference": "R1"}).json()
    assert [r["reference"] for r in only["requests"]] == ["R1"] and only["statuses"] == {}
    refused = httpx.post(f"{root}/_sandbox/config", json={"fualts": []})
    assert refused.status_code == 400 and "fualts" in refused.text
    assert httpx.post(f"{root}/_sandbox/config", json={"faults": ["explode"]}).status_code == 400
    assert httpx.post(f"{root}/_sandbox/reset").json() == {"reset": True}
    assert httpx.get(f"{root}/_sandbox/received").json() == {"requests": [], "statuses": {}}
    assert httpx.get(f"{root}/_sandbox/config").json()["faults"] == []


def test_rates_are_reproducible_with_a_seed(sif: SifSandbox) -> None:
    def codes(client: SifClient) -> list[int]:
        sif.reset()
        sif.configure(error_rate=0.3, not_found_rate=0.3, seed=42)
        return [client.put_status(EMPRESA, nok(f"R{i}")).status_code for i in range(30)]

    with SifClient(make_settings(sif.url)) as client:
        first = codes(client)
        assert first == codes(client)
    assert {503, 404, 204} <= set(first)


def test_concurrent_puts_are_all_recorded_and_one_ok_wins(sif: SifSandbox) -> None:
    with SifClient(make_settings(sif.url)) as client:
        results: list[int] = []
        lock = threading.Lock()

        def worker(n: int) -> None:
            for i in range(5):
                body = ok("SAME") if (n + i) % 2 else nok("SAME")
                code = client.put_status(EMPRESA, body).status_code
                with lock:
                    results.append(code)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
    received = sif.received()
    assert len(received) == len(results) == 40
    assert sorted(r["seq"] for r in received) == list(range(1, 41))
    statuses = sif.statuses(EMPRESA, "SAME")
    assert statuses.count("OK") == 1 and statuses[-1] == "OK"
    assert results.count(204) == len(statuses) and results.count(409) == 40 - len(statuses)


def test_stop_does_not_wait_for_a_hanging_request() -> None:
    sandbox = SifSandbox(secret=SECRET, faults=["hang"], hang_s=60).start()
    thread = threading.Thread(target=_swallow, args=(sandbox,))
    thread.start()
    assert sandbox.wait_for_requests(1)
    started = time.monotonic()
    sandbox.stop()
    assert time.monotonic() - started < 3
    thread.join(5)


def _swallow(sandbox: SifSandbox) -> None:
    with contextlib.suppress(httpx.HTTPError):
        put(sandbox, nok())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_runs_as_a_process() -> None:
    port = _free_port()
    env = {**os.environ, "BILLING_SIF_SECRET": SECRET}
    env.pop("BILLING_ENV_FILE", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.sandbox.sif", "--port", str(port), "--known-empresa", EMPRESA],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        url = f"http://127.0.0.1:{port}/mcs/sif"
        assert line == f"SIF sandbox listening on {url}"
        with SifClient(make_settings(url)) as client:
            assert client.put_status(EMPRESA, nok()).status_code == 204
            assert client.put_status("unknown-empresa", nok()).status_code == 404
        received = httpx.get(f"http://127.0.0.1:{port}/_sandbox/received").json()
        assert [r["code"] for r in received["requests"]] == [204, 404]
        assert SECRET not in json.dumps(received)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_a_client_that_resets_mid_request_is_not_a_traceback(
    sif: SifSandbox, caplog: Any
) -> None:
    """The chaos run SIGKILLs SIF clients mid-PUT: the sandbox notes it at debug level
    and keeps serving (it used to log a full traceback for each)."""
    import logging
    import struct

    caplog.set_level(logging.DEBUG, logger="worker.sandbox")
    host, port = sif.root_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(f"PUT /x HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5000\r\n\r\n{{".encode())
        time.sleep(0.2)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not any("went away" in r.message for r in caplog.records):
        time.sleep(0.05)
    assert any("went away" in r.message for r in caplog.records)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert httpx.get(f"{sif.root_url}/_sandbox/received", timeout=5).status_code == 200
