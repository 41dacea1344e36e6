"""Transport failures, faults and credentials, over real sockets: what was sent, what may
have been processed, and what the sandbox actually did."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from worker.finkok import (
    FinkokAmbiguous,
    FinkokBadResponse,
    FinkokClient,
    FinkokFault,
    FinkokNotSent,
    Kind,
)
from worker.sandbox.finkok import FinkokSandbox

from .conftest import PASSWORD, USERNAME

Invoice = Callable[..., bytes]


def test_soap_fault_raises_finkok_fault_and_stamps_nothing(
    client: FinkokClient, sandbox: FinkokSandbox, invoice: Invoice
) -> None:
    sandbox.configure(fault_rate=1.0)
    with pytest.raises(FinkokFault) as info:
        client.stamp(invoice())
    assert info.value.code == "senv:Server"
    assert info.value.fault_message == "'NoneType' object has no attribute 'date'"
    assert info.value.kind is Kind.TRANSIENT
    assert sandbox.stats()["totals"]["new_stamps"] == 0
    assert sandbox.stats()["events"]["fault"] == 1


def test_fault_once_rule_then_success(client: FinkokClient, sandbox: FinkokSandbox, invoice: Invoice) -> None:
    sandbox.configure(rules={"URE180429TM6": "fault_once"})
    xml = invoice()
    with pytest.raises(FinkokFault):
        client.stamp(xml)
    assert client.stamp(xml).kind is Kind.OK
    other = invoice()  # once per document
    with pytest.raises(FinkokFault):
        client.stamp(other)


def test_fault_ops_limits_the_rates(client: FinkokClient, sandbox: FinkokSandbox, invoice: Invoice) -> None:
    sandbox.configure(fault_rate=1.0, fault_ops=["quick_stamp"])
    assert client.stamp(invoice()).kind is Kind.OK
    with pytest.raises(FinkokFault):
        client.quick_stamp(invoice())


def test_hang_past_the_read_timeout_is_ambiguous(sandbox: FinkokSandbox, invoice: Invoice) -> None:
    sandbox.configure(hang_rate=1.0, hang_s=5.0)
    client = FinkokClient(sandbox.url, USERNAME, PASSWORD, connect_timeout_s=0.5, read_timeout_s=0.2)
    started = time.monotonic()
    with pytest.raises(FinkokAmbiguous) as info:
        client.stamp(invoice())
    assert time.monotonic() - started < 1.5
    assert "no answer within 0.2 s" in str(info.value)
    assert info.value.kind is Kind.TRANSIENT
    client.close()


def test_refused_port_is_not_sent() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = FinkokClient(f"http://127.0.0.1:{port}", USERNAME, PASSWORD,
                          connect_timeout_s=0.3, read_timeout_s=0.3)
    with pytest.raises(FinkokNotSent) as info:
        client.stamp(b"<x/>")
    assert "NewConnectionError" in str(info.value)
    assert info.value.__context__ is None


def test_connect_timeout_is_not_sent() -> None:
    """A listener whose accept backlog is full: the SYN is never answered (Linux)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(3):
        f = socket.socket()
        f.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            f.connect(("127.0.0.1", port))
        fillers.append(f)
    try:
        client = FinkokClient(f"http://127.0.0.1:{port}", USERNAME, PASSWORD,
                              connect_timeout_s=0.2, read_timeout_s=0.2)
        with pytest.raises((FinkokNotSent, FinkokAmbiguous)) as info:
            client.datetime()
        if isinstance(info.value, FinkokAmbiguous):  # the kernel accepted after all
            pytest.skip("this kernel completed the handshake despite the full backlog")
        assert "connect timeout" in str(info.value)
    finally:
        for f in fillers:
            f.close()
        server.close()


def test_drop_after_stamp_is_ambiguous_and_stamped_once(
    client: FinkokClient, sandbox: FinkokSandbox, invoice: Invoice
) -> None:
    sandbox.configure(drop_rate=1.0)
    xml = invoice()
    with pytest.raises(FinkokAmbiguous) as info:
        client.stamp(xml)
    assert "connection lost after sending" in str(info.value)
    stats = sandbox.document_stats(xml)
    assert stats is not None and stats["new_stamps"] == 1 and len(stats["uuids"]) == 1
    # The recovery the pipeline performs: ask `stamped` for the same bytes (drops only hit stamps).
    recovered = client.stamped(xml)
    assert recovered.kind is Kind.OK and recovered.uuid == stats["uuids"][0]
    sandbox.configure(drop_rate=0.0)
    assert client.stamp(xml).uuid == recovered.uuid  # and 307 agrees
    assert sandbox.document_stats(xml)["new_stamps"] == 1  # type: ignore[index]


def test_drop_once_rule(client: FinkokClient, sandbox: FinkokSandbox, invoice: Invoice) -> None:
    sandbox.configure(rules={"URE180429TM6": ["drop_once"]})
    xml = invoice()
    with pytest.raises(FinkokAmbiguous):
        client.stamp(xml)
    again = client.stamp(xml)
    assert again.kind is Kind.ALREADY_STAMPED and again.has_stamp
    assert sandbox.stats()["events"]["drop"] == 1


def test_wrong_password(sandbox: FinkokSandbox, invoice: Invoice) -> None:
    bad = FinkokClient(sandbox.url, USERNAME, "not-the-password", read_timeout_s=2.0)
    res = bad.stamp(invoice())
    assert res.codes == ("300",) and res.kind is Kind.ACCOUNT
    assert res.incidencias[0].mensaje == "El usuario o contraseña son inválidos"
    cancel = bad.cancel_signature(b"<Cancelacion/>")
    assert cancel.cod_estatus == "Invalid Username or Password" and cancel.kind is Kind.ACCOUNT
    assert bad.datetime().error == "Invalid Username or Password"
    assert bad.query_pending("11111111-2222-3333-4444-555555555555").error == "Invalid Username or Password"
    reg = bad.registration_get("EKU9003173C9")
    assert reg.message == "Invalid Username or Password"
    assert sandbox.stats()["totals"]["new_stamps"] == 0
    bad.close()


def test_wrong_path_is_a_bad_response(sandbox: FinkokSandbox) -> None:
    client = FinkokClient(sandbox.url + "/not-finkok", USERNAME, PASSWORD, read_timeout_s=2.0)
    with pytest.raises(FinkokBadResponse) as info:
        client.datetime()
    assert info.value.status == 404 and info.value.kind is Kind.ACCOUNT


class _Html502(BaseHTTPRequestHandler):
    bodies = [b"<html><body>502 Bad Gateway</body></html>", b"<html><body><hr>502</body></html>"]

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        body = self.bodies[int(self.path.endswith("utilities"))]  # well-formed, then not
        self.send_response(502)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def gateway() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Html502)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_http_5xx_without_a_fault_is_ambiguous(gateway: str) -> None:
    client = FinkokClient(gateway, USERNAME, PASSWORD, read_timeout_s=2.0)
    for call in (lambda: client.stamp(b"<x/>"), client.datetime):
        with pytest.raises(FinkokAmbiguous) as info:
            call()
        assert info.value.status == 502
        assert "HTTP 502 without a SOAP fault" in str(info.value)


def test_latency(client: FinkokClient, sandbox: FinkokSandbox) -> None:
    client.datetime()  # warm up the zeep client
    sandbox.configure(latency_ms=80, jitter_ms=10)
    started = time.monotonic()
    client.datetime()
    assert time.monotonic() - started >= 0.069
