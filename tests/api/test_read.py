"""Reading invoices: state, errors, SIF delivery, the stamped XML and its PDF, 404/409."""

from __future__ import annotations

import io
from datetime import datetime, timedelta

import httpx
import pytest
from pypdf import PdfReader
from sqlalchemy.orm import Session, sessionmaker

from tests.api.helpers import stamp_row
from worker.cfdi.factory import build_invoice
from worker.db.models import Invoice, Notification, utcnow


def _create(client: httpx.Client, key: str, ref: str) -> str:
    res = client.post(
        "/v1/invoices", params={"empresaRefId": "E1", "reference": ref}, content=build_invoice(),
        headers={"Content-Type": "application/xml", "X-API-Key": key},
    )
    assert res.status_code == 201, res.text
    return str(res.json()["id"])


def test_view_shows_state_errors_sif_delivery_and_timestamps(
    client: httpx.Client, key_e1: str, sessions: sessionmaker[Session]
) -> None:
    invoice_id = _create(client, key_e1, "R-view")
    fresh = client.get(f"/v1/invoices/{invoice_id}", headers={"X-API-Key": key_e1}).json()
    assert (fresh["state"], fresh["satUuid"], fresh["errors"], fresh["sif"]) == ("received", None, [], None)
    created = datetime.fromisoformat(fresh["createdAt"])
    assert abs(created - utcnow()) < timedelta(minutes=1)

    now = utcnow()
    with sessions.begin() as s:
        row = s.get(Invoice, invoice_id)
        assert row is not None
        row.state, row.error_kind, row.attempts = "rejected", "fiscal_data", 1
        row.errors = [{"code": "CFDI40143", "message": "RFC del receptor no válido", "kind": "fiscal_data"}]
        s.add(Notification(invoice_id=invoice_id, status="NOK", state="retry_wait", attempts=1,
                           last_status_code=503, created_at=now - timedelta(seconds=5)))
        s.add(Notification(invoice_id=invoice_id, status="NOK", state="delivered", attempts=2,
                           last_status_code=204, result="delivered", delivered_at=now, created_at=now))
    view = client.get(f"/v1/invoices/{invoice_id}", headers={"X-API-Key": key_e1}).json()
    assert (view["state"], view["errorKind"], view["stampAttempts"]) == ("rejected", "fiscal_data", 1)
    assert view["errors"] == [
        {"code": "CFDI40143", "message": "RFC del receptor no válido", "kind": "fiscal_data"}
    ]
    sif = view["sif"]  # the latest notification
    assert (sif["status"], sif["state"], sif["result"], sif["attempts"], sif["lastStatusCode"]) == (
        "NOK", "delivered", "delivered", 2, 204,
    )
    assert datetime.fromisoformat(sif["deliveredAt"]) == now
    listed = client.get("/v1/invoices", params={"reference": "R-view", "empresaRefId": "E1"},
                        headers={"X-API-Key": key_e1}).json()
    assert listed == {"items": [view]}


@pytest.mark.parametrize("suffix", ["", "/xml", "/pdf"])
def test_unknown_or_malformed_ids_are_404(client: httpx.Client, key_e1: str, suffix: str) -> None:
    for invoice_id in ("6f1c1f0e-3c1a-4f43-9d0e-000000000000", "nope", "%00"):
        res = client.get(f"/v1/invoices/{invoice_id}{suffix}", headers={"X-API-Key": key_e1})
        assert res.status_code == 404, res.text
        assert res.json()["error"]["reason"] == "not_found"


def test_xml_and_pdf_are_409_until_stamped_then_served(
    client: httpx.Client, key_e1: str, sessions: sessionmaker[Session]
) -> None:
    invoice_id = _create(client, key_e1, "R-stamped")
    for suffix in ("/xml", "/pdf"):
        res = client.get(f"/v1/invoices/{invoice_id}{suffix}", headers={"X-API-Key": key_e1})
        assert res.status_code == 409
        assert res.json()["error"] == {
            "reason": "not_stamped",
            "message": f"invoice {invoice_id} is received: it has no stamped XML yet",
            "invoiceId": invoice_id, "state": "received",
        }

    sat_uuid, stamped = stamp_row(sessions, invoice_id)
    xml = client.get(f"/v1/invoices/{invoice_id}/xml", headers={"X-API-Key": key_e1})
    assert xml.status_code == 200
    assert xml.headers["content-type"] == "application/xml"
    assert xml.content == stamped  # the exact bytes, not re-serialized
    assert sat_uuid in xml.headers["content-disposition"]

    pdf = client.get(f"/v1/invoices/{invoice_id}/pdf", headers={"X-API-Key": key_e1})
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.content)).pages)
    assert sat_uuid in text

    view = client.get(f"/v1/invoices/{invoice_id}", headers={"X-API-Key": key_e1}).json()
    assert (view["state"], view["satUuid"]) == ("stamped", sat_uuid)
    assert view["fechaTimbrado"] and view["stampedAt"]


def test_list_needs_a_reference_and_checks_ids(client: httpx.Client, key_e1: str) -> None:
    missing = client.get("/v1/invoices", headers={"X-API-Key": key_e1})
    assert missing.status_code == 422 and missing.json()["error"]["reason"] == "invalid_request"
    bad = client.get("/v1/invoices", params={"reference": "a\x00b"}, headers={"X-API-Key": key_e1})
    assert bad.status_code == 422 and bad.json()["error"]["reason"] == "invalid_id"
    none = client.get("/v1/invoices", params={"reference": "nothing"}, headers={"X-API-Key": key_e1})
    assert none.status_code == 200 and none.json() == {"items": []}
