"""POST/GET /v1/invoices/{id}/cancellation: the same door as the CLI, scoped keys,
one cancellation however often it is asked (the send itself: tests/pipeline)."""

from __future__ import annotations

import uuid as uuidlib

import httpx
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from worker.cfdi.factory import build_invoice
from worker.db.models import AuditLog, Cancellation, Invoice
from worker.invoices.intake import submit

from .conftest import MakeKey


def _invoice(sessions: sessionmaker[Session], ref: str, *, stamped: bool = True) -> tuple[str, str]:
    invoice_id = submit(sessions, build_invoice(folio=ref), empresa_ref_id="E1",
                        reference=ref).invoice_id
    sat_uuid = str(uuidlib.uuid4()).upper()
    if stamped:
        with sessions.begin() as s:
            s.execute(update(Invoice).where(Invoice.id == invoice_id)
                      .values(state="stamped", sat_uuid=sat_uuid))
    return invoice_id, sat_uuid


def test_cancel_once_read_it_and_scoped(
    client: httpx.Client, sessions: sessionmaker[Session], key_e1: str, make_key: MakeKey,
) -> None:
    h = {"X-API-Key": key_e1}
    invoice_id, sat_uuid = _invoice(sessions, "API-C1")
    url = f"/v1/invoices/{invoice_id}/cancellation"
    assert client.get(url, headers=h).status_code == 404  # none yet
    body = {"motivo": "02", "reason": "wrong receptor"}
    first = client.post(url, json=body, headers=h)
    assert first.status_code == 201, first.text
    view = first.json()
    assert (view["uuid"], view["state"], view["motivo"], view["hasAcuse"]) == (
        sat_uuid, "requested", "02", False)
    again = client.post(url, json=body, headers=h)
    assert again.status_code == 200 and again.json()["id"] == view["id"]
    assert client.get(url, headers=h).json()["id"] == view["id"]
    other = {"X-API-Key": make_key("E2")}
    # another empresa's key: the invoice does not exist for it (404, not a 403 naming it)
    assert client.post(url, json=body, headers=other).status_code == 404
    assert client.get(url, headers=other).status_code == 404
    conflict = client.post(url, json={"motivo": "03", "reason": "x"}, headers=h)
    assert conflict.status_code == 409 and conflict.json()["error"]["reason"] == "conflict"
    with sessions() as s:
        assert s.query(Cancellation).count() == 1
        (audit,) = s.query(AuditLog).filter_by(action="cancel").all()
    assert audit.actor.startswith("api:") and audit.reason == "wrong receptor"


def test_refusals_name_their_reason(
    client: httpx.Client, sessions: sessionmaker[Session], key_e1: str,
) -> None:
    h = {"X-API-Key": key_e1}
    stamped, _ = _invoice(sessions, "API-C2")
    received, _ = _invoice(sessions, "API-C3", stamped=False)
    cases = [
        (stamped, {"motivo": "01", "reason": "r"}, 422, "motivo"),
        (stamped, {"motivo": "01", "reason": "r", "substitute": str(uuidlib.uuid4())}, 422,
         "substitute_missing"),
        (received, {"motivo": "02", "reason": "r"}, 409, "not_stamped"),
        ("no-such-invoice", {"motivo": "02", "reason": "r"}, 404, "not_found"),
    ]
    for invoice_id, body, status, reason in cases:
        res = client.post(f"/v1/invoices/{invoice_id}/cancellation", json=body, headers=h)
        assert res.status_code == status, res.text
        assert res.json()["error"]["reason"] == reason
    bad = client.post(f"/v1/invoices/{stamped}/cancellation", json={"motivo": "05", "reason": "r"},
                      headers=h)
    assert bad.status_code == 422
