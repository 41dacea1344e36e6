"""413 before the body is read: a declared Content-Length, and a chunked stream cut off."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.api.conftest import MAX_XML
from tests.api.helpers import raw_exchange
from worker.cfdi.factory import build_invoice
from worker.db.models import Invoice


def _head(key: str, **headers: str) -> bytes:
    lines = [
        "POST /v1/invoices?empresaRefId=E1&reference=R-413 HTTP/1.1", "Host: test",
        "Content-Type: application/xml", f"X-API-Key: {key}",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_declared_length_over_the_limit_is_answered_before_any_body_byte(
    api_server: str, key_e1: str, sessions: sessionmaker[Session]
) -> None:
    # 10 MB announced, nothing sent: the answer can only come from the header.
    status, body = raw_exchange(api_server, _head(key_e1, **{"Content-Length": "10000000"}))
    assert status == 413
    assert json.loads(body)["error"]["reason"] == "too_large"
    assert "10000000" in json.loads(body)["error"]["message"]


def test_chunked_stream_is_cut_off_once_it_passes_the_limit(api_server: str, key_e1: str) -> None:
    chunk = b"<" * 4096
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(MAX_XML // 4096 + 1))
    # The terminating zero-size chunk is never sent: the server answers mid-stream.
    status, body = raw_exchange(api_server, _head(key_e1, **{"Transfer-Encoding": "chunked"}), chunks)
    assert status == 413
    assert json.loads(body)["error"] == {
        "reason": "too_large",
        "message": f"the request body passed {MAX_XML} bytes, over the limit of {MAX_XML} bytes",
    }


def test_httpx_clients_get_413_both_ways(
    client: httpx.Client, key_e1: str, sessions: sessionmaker[Session]
) -> None:
    params = {"empresaRefId": "E1", "reference": "R-413"}
    headers = {"Content-Type": "application/xml", "X-API-Key": key_e1}
    too_big = b"<" * (MAX_XML + 1)
    with_length = client.post("/v1/invoices", params=params, content=too_big, headers=headers)

    def stream() -> Iterator[bytes]:
        for i in range(0, len(too_big), 1000):
            yield too_big[i : i + 1000]

    chunked = client.post("/v1/invoices", params=params, content=stream(), headers=headers)
    assert (with_length.status_code, chunked.status_code) == (413, 413)
    assert chunked.json()["error"]["reason"] == "too_large"
    with sessions() as s:
        assert s.scalars(select(Invoice)).first() is None


def test_chunked_body_under_the_limit_is_read_whole(client: httpx.Client, key_e1: str) -> None:
    xml = build_invoice(folio="413")
    parts = (xml[i : i + 512] for i in range(0, len(xml), 512))
    res = client.post(
        "/v1/invoices", params={"empresaRefId": "E1", "reference": "R-chunked"}, content=parts,
        headers={"Content-Type": "application/xml", "X-API-Key": key_e1},
    )
    assert res.status_code == 201, res.text


def test_json_whose_xml_decodes_over_the_limit_is_413(client: httpx.Client, key_e1: str) -> None:
    xml = base64.b64encode(b"<" * (MAX_XML + 1)).decode()
    res = client.post(
        "/v1/invoices", json={"empresaRefId": "E1", "reference": "R-b64", "xml": xml},
        headers={"X-API-Key": key_e1},
    )
    assert res.status_code == 413
    assert res.json()["error"]["reason"] == "too_large"
    assert str(MAX_XML) in res.json()["error"]["message"]
