"""The door of the HTTP API: no key, no body read; a body that trickles is cut off (408);
a database that is down is a 503 with Retry-After; interactive docs at /docs."""

from __future__ import annotations

import json
import time

import httpx

from tests.api.helpers import raw_exchange
from worker.api.app import create_api
from worker.api.server import BackgroundServer
from worker.settings import load_settings


def _head(*extra: str, length: int = 1000) -> bytes:
    lines = ["POST /v1/invoices?empresaRefId=E1&reference=R-door HTTP/1.1", "Host: test",
             "Content-Type: application/xml", f"Content-Length: {length}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_no_key_is_401_before_a_byte_of_the_body(api_server: str) -> None:
    # 1000 bytes announced, none sent: only the headers can have decided the answer.
    status, body = raw_exchange(api_server, _head(), timeout=5)
    assert status == 401 and json.loads(body)["error"]["reason"] == "missing_api_key"
    status, body = raw_exchange(api_server, _head("X-API-Key: bk_nope_nope"), timeout=5)
    assert status == 401 and json.loads(body)["error"]["reason"] == "invalid_api_key"


def test_a_valid_key_still_waits_for_its_body(api_server: str, key_e1: str) -> None:
    """Negative control: with a key the server does wait for the body, until the body
    timeout (2 s in these tests) answers 408."""
    started = time.monotonic()
    status, body = raw_exchange(api_server, _head(f"X-API-Key: {key_e1}"), b"<cfdi", timeout=10)
    waited = time.monotonic() - started
    assert status == 408 and json.loads(body)["error"]["reason"] == "body_timeout"
    assert waited >= 1.5  # it did wait for the body (the timeout, not the auth, answered)


def test_a_database_that_is_down_is_503_with_retry_after() -> None:
    settings = load_settings(database_url="postgresql://nobody:pw-hidden@127.0.0.1:1/none",
                             broker_url="filesystem://", environment="test")
    with BackgroundServer(create_api(settings)) as base:
        res = httpx.post(f"{base}/v1/invoices", params={"empresaRefId": "E1", "reference": "R"},
                         content=b"<x/>", headers={"X-API-Key": "bk_" + "a" * 12 + "_" + "b" * 43,
                                                   "Content-Type": "application/xml"}, timeout=20)
    assert res.status_code == 503 and res.headers["Retry-After"] == "10"
    assert res.json()["error"]["reason"] == "unavailable" and "pw-hidden" not in res.text


def test_interactive_docs(client: httpx.Client) -> None:
    res = client.get("/docs")
    assert res.status_code == 200 and "swagger" in res.text.lower() and "/openapi.json" in res.text
