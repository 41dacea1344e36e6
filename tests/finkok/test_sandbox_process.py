"""The sandbox as its own process (``python -m worker.sandbox.finkok``), driven over its
HTTP control API the way a test or demo in another process drives it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from worker.finkok import FinkokAmbiguous, FinkokClient, Kind

Invoice = Callable[..., bytes]
PASSWORD = "process-Secret-42"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _http(method: str, url: str, data: dict[str, Any] | None = None) -> tuple[int, Any]:
    body = json.dumps(data).encode() if data is not None else None
    req = urllib.request.Request(url, data=body, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture(scope="module")
def process_url() -> Iterator[str]:
    port = _free_port()
    env = dict(os.environ, BILLING_FINKOK_PASSWORD=PASSWORD, BILLING_FINKOK_USERNAME="proc@example.com")
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.sandbox.finkok", "--port", str(port), "--config",
         json.dumps({"latency_ms": 1})],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if _http("GET", url + "/_sandbox/health") == (200, {"ok": True}):
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read().decode() if proc.stdout else ""
                pytest.fail(f"sandbox process did not come up: {out}")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        output = proc.stdout.read().decode() if proc.stdout else ""
        assert PASSWORD not in output


def test_control_api_drives_another_process(process_url: str, invoice: Invoice) -> None:
    status, config = _http("GET", process_url + "/_sandbox/config")
    assert status == 200 and config["username"] == "proc@example.com"
    assert config["password"] == "********" and config["latency_ms"] == 1.0

    client = FinkokClient(process_url, "proc@example.com", PASSWORD, connect_timeout_s=0.5, read_timeout_s=3)
    xml = invoice()
    assert client.stamp(xml).kind is Kind.OK

    status, changed = _http("POST", process_url + "/_sandbox/config",
                            {"drop_rate": 1.0, "rules": {"XAXX010101000": "reject:CFDI40143"}})
    assert status == 200 and changed["drop_rate"] == 1.0
    assert changed["rules"] == {"XAXX010101000": ["reject:CFDI40143"]}
    other = invoice()
    with pytest.raises(FinkokAmbiguous):
        client.stamp(other)

    status, stats = _http("GET", process_url + "/_sandbox/stats")
    assert status == 200
    assert stats["totals"]["new_stamps"] == 2 and stats["totals"]["double_stamped_documents"] == 0
    assert stats["events"]["drop"] == 1
    assert stats["calls"]["stamp.stamp"] == 2

    assert _http("POST", process_url + "/_sandbox/config", {"nope": 1})[0] == 400
    assert _http("POST", process_url + "/_sandbox/config", {"fault_rate": 2})[0] == 400
    assert _http("POST", process_url + "/_sandbox/config", {"rules": {"X": "explode"}})[0] == 400

    assert _http("POST", process_url + "/_sandbox/reset", {"config": True}) == (200, {"ok": True})
    _, stats = _http("GET", process_url + "/_sandbox/stats")
    assert stats["totals"]["documents"] == 0
    _, config = _http("GET", process_url + "/_sandbox/config")
    assert config["drop_rate"] == 0.0 and config["username"] == "proc@example.com"
    assert client.stamp(other).kind is Kind.OK  # forgotten: stamps anew
    client.close()


def test_unknown_operation_and_garbage_are_client_faults(process_url: str) -> None:
    req = urllib.request.Request(process_url + "/servicios/soap/stamp", data=b"not xml", method="POST",
                                 headers={"Content-Type": "text/xml"})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=5)
    assert info.value.code == 500
    body = info.value.read().decode()
    assert "<faultcode>senv:Client.SchemaValidationError</faultcode>" in body
    envelope = (b'<soap-env:Envelope xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/">'
                b'<soap-env:Body><ns0:explode xmlns:ns0="http://facturacion.finkok.com/stamp"/>'
                b"</soap-env:Body></soap-env:Envelope>")
    req = urllib.request.Request(process_url + "/servicios/soap/stamp", data=envelope, method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=5)
    assert b"senv:Client.ResourceNotFound" in info.value.read()
