"""SifClient over real HTTP against the SIF sandbox: headers, path, overrides, errors, secrecy."""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from urllib3 import HTTPConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError, ProtocolError, ReadTimeoutError

from worker.sandbox.sif import SifSandbox
from worker.sif.client import (
    MAX_BODY_TEXT_BYTES,
    SifClient,
    SifConfigError,
    SifConnectionError,
    SifTimeout,
    _timed_out,
    resolve_target,
    tls_context,
)
from worker.sif.payload import build_nok
from worker.sif.schema import SifBodyError

from .conftest import EMPRESA, SECRET, make_settings

INVOICE_ID = "6f1c2a7e-4b7d-4c1e-9a55-0d2f3b1e8c90"


def nok(reference: str = "0016921514") -> dict[str, object]:
    return build_nok(reference=reference, invoice_id=INVOICE_ID, pedidoga="p1",
                     errors=[{"code": "301", "message": "XML mal formado", "kind": "permanent"}])


def test_put_reaches_the_documented_path_with_the_documented_headers(
    sif: SifSandbox, client: SifClient
) -> None:
    body = nok()
    response = client.put_status(EMPRESA, body)
    assert response.status_code == 204 and response.body_text == ""
    assert response.duration_ms >= 0
    [seen] = sif.received()
    assert seen["empresa_ref_id"] == EMPRESA
    assert seen["secret_ok"] is True
    assert seen["generator_id"] == "SIF_TEST"
    assert seen["content_type"] == "application/json"
    assert seen["body"] == body
    assert client.url_for(EMPRESA) == f"{sif.url}/empresas/{EMPRESA}/documents/billing/status"


def test_one_pooled_connection_is_reused(sif: SifSandbox, client: SifClient) -> None:
    for i in range(3):
        assert client.put_status(EMPRESA, nok(f"R{i}")).status_code == 204
    assert len({r["peer_port"] for r in sif.received()}) == 1


def test_empresa_ref_id_is_quoted_as_one_segment(sif: SifSandbox, client: SifClient) -> None:
    assert client.put_status("ACME SA?x=1#y", nok()).status_code == 204
    assert sif.received()[0]["empresa_ref_id"] == "ACME SA?x=1#y"
    assert "/empresas/ACME%20SA%3Fx%3D1%23y/documents" in client.url_for("ACME SA?x=1#y")


@pytest.mark.parametrize("bad", ["a/b", "../x", "..", ".", "", "  ", "a\\b", "a\nb"])
def test_unsafe_empresa_ref_ids_are_refused_before_sending(
    sif: SifSandbox, client: SifClient, bad: str
) -> None:
    with pytest.raises(SifConfigError, match="empresaRefId"):
        client.put_status(bad, nok())
    assert sif.received() == []


def test_an_invalid_body_is_never_sent(sif: SifSandbox, client: SifClient) -> None:
    body = nok()
    body["errorDatosFiscales"] = False
    with pytest.raises(SifBodyError, match="errorDatosFiscales"):
        client.put_status(EMPRESA, body)
    assert sif.received() == []


def test_per_empresa_overrides_choose_base_secret_and_generator(sif: SifSandbox) -> None:
    with SifSandbox(secret="second-sif-secret-91b2") as other:
        settings = make_settings(sif.url, sif_overrides={
            "E2": {"base_url": other.url, "secret": "second-sif-secret-91b2", "generator_id": "GEN_2"},
            "E3": {"generator_id": "GEN_3"},
        })
        with SifClient(settings) as client:
            for empresa in ("E1", "E2", "E3"):
                assert client.put_status(empresa, nok()).status_code == 204
        assert [(r["empresa_ref_id"], r["generator_id"], r["secret_ok"]) for r in sif.received()] == [
            ("E1", "SIF_TEST", True), ("E3", "GEN_3", True),
        ]
        assert [(r["empresa_ref_id"], r["generator_id"], r["secret_ok"]) for r in other.received()] == [
            ("E2", "GEN_2", True),
        ]
        target = resolve_target(settings, "E2")
        assert "second-sif-secret" not in repr(target)


def test_override_typos_are_refused_without_echoing_values(sif: SifSandbox) -> None:
    settings = make_settings(sif.url, sif_overrides={"E2": {"secrte": "typo-secret-value-123"}})
    with pytest.raises(SifConfigError, match=r"sif_overrides\['E2'\]: unknown keys \['secrte'\]") as info:
        SifClient(settings)
    assert "typo-secret-value-123" not in str(info.value)


def test_answer_text_is_truncated_to_2kb(sif: SifSandbox, client: SifClient) -> None:
    sif.configure(faults=["503"], error_message="x" * 10_000)
    response = client.put_status(EMPRESA, nok())
    assert response.status_code == 503
    assert len(response.body_text.encode()) == MAX_BODY_TEXT_BYTES
    assert response.body_text.startswith('{"error": {"code": 503')
    # The unread rest went with its connection: the next PUT opens a fresh one and is whole.
    assert client.put_status(EMPRESA, nok("R2")).status_code == 204
    first, second = sif.received()
    assert first["peer_port"] != second["peer_port"] and second["body"]["reference"] == "R2"


def test_a_stalled_send_is_a_timeout_and_a_refusal_is_not() -> None:
    """urllib3 wraps a send past the timeout in ProtocolError; NewConnectionError (refused,
    DNS) subclasses its ConnectTimeoutError."""
    pool = HTTPConnectionPool("127.0.0.1", 1)
    assert _timed_out(ProtocolError("Connection aborted.", TimeoutError("timed out")))
    assert _timed_out(ReadTimeoutError(pool, "/x", "Read timed out."))
    assert _timed_out(ConnectTimeoutError(pool, "timed out"))
    assert not _timed_out(NewConnectionError(pool, "Failed to establish a new connection"))
    assert not _timed_out(ProtocolError("Connection aborted.", ConnectionResetError(104, "reset")))


def test_timeout_is_our_own_exception_without_the_secret(sif: SifSandbox) -> None:
    sif.configure(faults=["hang"], hang_s=5)
    with (
        SifClient(make_settings(sif.url, sif_read_timeout_s=0.2)) as client,
        pytest.raises(SifTimeout) as info,
    ):
        client.put_status(EMPRESA, nok())
    assert "ReadTimeout" in str(info.value)
    assert 150 <= info.value.duration_ms < 2000
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert SECRET not in str(info.value) and SECRET not in repr(info.value)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_connection_refused_is_our_own_exception_without_the_secret() -> None:
    url = f"http://127.0.0.1:{_closed_port()}/mcs/sif"
    with SifClient(make_settings(url)) as client, pytest.raises(SifConnectionError) as info:
        client.put_status(EMPRESA, nok())
    assert "NewConnectionError" in str(info.value) and "Connection refused" in str(info.value)
    assert SECRET not in str(info.value)


def test_dropped_connection_is_a_connection_error(sif: SifSandbox, client: SifClient) -> None:
    sif.configure(faults=["drop"])
    with pytest.raises(SifConnectionError, match="ProtocolError.*Connection aborted"):
        client.put_status(EMPRESA, nok())
    assert sif.statuses(EMPRESA, "0016921514") == ["NOK"]  # SIF committed it anyway


def test_secret_never_reaches_logs_or_reprs(
    sif: SifSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # root: urllib3.*, httpx, httpcore.* and ours at DEBUG
    settings = make_settings(sif.url, sif_read_timeout_s=0.2)
    with SifClient(settings) as client:
        client.put_status(EMPRESA, nok())
        sif.configure(faults=["hang", "503"], hang_s=2)
        with pytest.raises(SifTimeout):
            client.put_status(EMPRESA, nok())
        client.put_status(EMPRESA, nok())
        assert SECRET not in repr(client)
        path = urlsplit(client.url_for(EMPRESA)).path
    with SifClient(make_settings(sif.url, sif_secret="wrong-secret-abc123")) as wrong:
        assert wrong.put_status(EMPRESA, nok()).status_code == 401
    assert [r["secret_ok"] for r in sif.received()] == [True, True, True, False]  # sent, both
    names = {r.name for r in caplog.records}
    assert {"urllib3.connectionpool", "worker.sif"} <= names  # DEBUG really on
    text = "\n".join(r.getMessage() for r in caplog.records)
    # The negative control: urllib3 logged each request of the exchange that carried the secret.
    put_line = f'"PUT {path} HTTP/1.1"'
    assert f"{put_line} 204" in text and f"{put_line} 503" in text and f"{put_line} 401" in text
    assert SECRET not in text and "wrong-secret-abc123" not in text
    # Nothing at INFO or above per request (httpx logged "HTTP Request: PUT ..." at INFO).
    assert [r.getMessage() for r in caplog.records
            if r.name.startswith("urllib3") and r.levelno >= logging.INFO] == []
    assert SECRET not in repr(settings) and SECRET not in str(settings.masked())


def test_a_library_that_echoed_the_secret_would_be_masked(
    sif: SifSandbox, client: SifClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A gateway echoing our headers would put them in httpcore's DEBUG response-header
    line (the health check's httpx), a future urllib3 might log request headers; the filter
    masks a registered secret whatever watched logger line carries it, and only that."""
    caplog.set_level(logging.DEBUG)
    logging.getLogger("httpcore.http11").debug(
        "receive_response_headers.complete return_value=%r", [(b"secret", SECRET.encode())]
    )
    logging.getLogger("httpx").info("echo %s", SECRET)
    logging.getLogger("urllib3.connectionpool").debug("headers %r", {"secret": SECRET})
    logging.getLogger("urllib3.connection").warning("echo %s", SECRET)
    logging.getLogger("urllib3.connectionpool").debug("unregistered %s", "not-a-secret-5d1e")
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert SECRET not in text
    assert text.count("********") == 4
    assert "unregistered not-a-secret-5d1e" in text  # the capture shows what is not a secret


def _self_signed(tmp_path: Path, name: str, san: x509.GeneralName) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([san]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class _NoContent(BaseHTTPRequestHandler):
    def do_PUT(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def _https(cert: Path, key: Path) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NoContent)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/mcs/sif"
    finally:
        server.shutdown()
        server.server_close()


def test_tls_is_verified_as_httpx_verified_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """certifi's roots by default (a self-signed SIF is refused), SSL_CERT_FILE when set (as
    httpx's default context), and the hostname checked against the certificate."""
    good = _self_signed(tmp_path, "sif-ip", x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    other = _self_signed(tmp_path, "elsewhere", x509.DNSName("sif.example.invalid"))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)

    def put(served: tuple[Path, Path], ca_file: Path | None) -> int:
        if ca_file is not None:
            monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
        tls_context.cache_clear()
        with _https(*served) as url, SifClient(make_settings(url)) as client:
            return client.put_status(EMPRESA, nok()).status_code

    try:
        with pytest.raises(SifConnectionError, match="SSLError.*CERTIFICATE_VERIFY_FAILED"):
            put(good, None)
        assert put(good, good[0]) == 204
        with pytest.raises(SifConnectionError, match="SSLError.*IP address mismatch"):
            put(other, other[0])
    finally:
        monkeypatch.undo()
        tls_context.cache_clear()
