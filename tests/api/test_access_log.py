"""The access log: method, path, status, duration, key prefix/id; no secret, query or XML."""

from __future__ import annotations

import logging
import time

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from worker.cfdi.factory import build_invoice
from worker.db.models import ApiKey


def test_access_lines_carry_no_secret_no_query_no_body(
    client: httpx.Client, key_e1: str, caplog: pytest.LogCaptureFixture,
    sessions: sessionmaker[Session],
) -> None:
    _, prefix, secret = key_e1.split("_", 2)
    xml = build_invoice(folio="log")
    with caplog.at_level(logging.INFO, logger="worker.api.access"):
        created = client.post(
            "/v1/invoices", params={"empresaRefId": "E1", "reference": "R-secret-ref"}, content=xml,
            headers={"Content-Type": "application/xml", "X-API-Key": key_e1},
        )
        client.get("/v1/invoices/nope", headers={"Authorization": f"Bearer {key_e1}"})
        client.get("/v1/invoices", params={"reference": "x"}, headers={"X-API-Key": "wrong"})
        client.get("/v1/invoices/a%0Ab")  # a newline in the path cannot forge a line
        # The server logs a request after its answer went out: give the last line a moment.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(
                [r for r in caplog.records if r.name == "worker.api.access"]) < 4:
            time.sleep(0.02)
    lines = [r.getMessage() for r in caplog.records if r.name == "worker.api.access"]
    assert len(lines) == 4, lines
    post, missing, refused, forged = lines
    with sessions() as s:
        key_id = s.scalars(select(ApiKey.id).where(ApiKey.prefix == prefix)).one()
    assert created.status_code == 201
    assert post.startswith("POST /v1/invoices 201 ") and post.endswith(f"ms key={prefix} ({key_id})")
    assert missing.startswith("GET /v1/invoices/nope 404 ") and f"key={prefix}" in missing
    assert refused.startswith("GET /v1/invoices 401 ") and refused.endswith("key=-")
    assert forged.startswith("GET /v1/invoices/a\\nb 401") and "\n" not in forged
    everything = "\n".join(lines) + "".join(str(r.__dict__) for r in caplog.records)
    for leak in (secret, key_e1, "R-secret-ref", "reference=", "Comprobante", "wrong"):
        assert leak not in everything
