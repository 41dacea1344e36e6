"""POST /v1/invoices over a real server and database: the same intake as the CLI."""

from __future__ import annotations

import base64
from collections.abc import Callable

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from worker.cfdi.factory import build_invoice
from worker.db.models import AuditLog, Invoice

XML = {"Content-Type": "application/xml"}


def _post_xml(client: httpx.Client, key: str, xml: bytes, **params: str) -> httpx.Response:
    return client.post("/v1/invoices", params=params, content=xml, headers={**XML, "X-API-Key": key})


def _post_json(client: httpx.Client, key: str, xml: bytes, **fields: object) -> httpx.Response:
    body = {"xml": base64.b64encode(xml).decode(), **fields}
    return client.post("/v1/invoices", json=body, headers={"X-API-Key": key})


def test_new_invoice_is_201_with_location_stored_exactly_and_queued(
    client: httpx.Client, key_e1: str, sessions: sessionmaker[Session], queued: Callable[[], int]
) -> None:
    xml = build_invoice(folio="101")
    before = queued()
    res = _post_xml(client, key_e1, xml, empresaRefId="E1", reference="R-101", pedidoga="P9")
    assert res.status_code == 201, res.text
    body = res.json()
    assert body["outcome"] == "created" and body["state"] == "received" and body["published"] is True
    assert res.headers["location"] == f"/v1/invoices/{body['id']}"
    assert queued() == before + 1  # a real message in the filesystem broker
    with sessions() as s:
        row = s.get(Invoice, body["id"])
        assert row is not None
        assert (row.xml, row.empresa_ref_id, row.reference, row.pedidoga) == (xml, "E1", "R-101", "P9")
    followed = client.get(res.headers["location"], headers={"X-API-Key": key_e1})
    assert followed.status_code == 200 and followed.json()["reference"] == "R-101"


def test_same_bytes_again_is_200_with_the_same_id_and_no_second_message(
    client: httpx.Client, key_e1: str, sessions: sessionmaker[Session], queued: Callable[[], int]
) -> None:
    xml = build_invoice(folio="102")
    first = _post_xml(client, key_e1, xml, empresaRefId="E1", reference="R-102")
    before = queued()
    # The same invoice sent the other way (JSON, base64) is still the same invoice.
    again = _post_json(client, key_e1, xml, empresaRefId="E1", reference="R-102")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == {
        "id": first.json()["id"], "outcome": "existing", "state": "received", "published": False,
    }
    assert "location" not in again.headers
    assert queued() == before
    with sessions() as s:
        assert len(s.scalars(select(Invoice)).all()) == 1


def test_ids_as_headers_and_bearer_auth(client: httpx.Client, key_e1: str) -> None:
    res = client.post(
        "/v1/invoices",
        content=build_invoice(folio="103"),
        headers={
            "Content-Type": "text/xml; charset=utf-8", "Authorization": f"Bearer {key_e1}",
            "X-Empresa-Ref-Id": "E1", "X-Reference": "R-103", "X-Pedidoga": "P-103",
        },
    )
    assert res.status_code == 201, res.text
    got = client.get(res.headers["location"], headers={"X-API-Key": key_e1}).json()
    assert (got["empresaRefId"], got["reference"], got["pedidoga"]) == ("E1", "R-103", "P-103")


def test_different_bytes_for_a_held_reference_is_409_naming_the_invoice(
    client: httpx.Client, key_e1: str
) -> None:
    first = _post_xml(client, key_e1, build_invoice(folio="104"), empresaRefId="E1", reference="R-104")
    other = _post_json(client, key_e1, build_invoice(folio="105"), empresaRefId="E1", reference="R-104")
    assert other.status_code == 409
    err = other.json()["error"]
    assert err["reason"] == "conflict"
    assert (err["invoiceId"], err["state"]) == (first.json()["id"], "received")
    assert first.json()["id"] in err["message"]
    # Asking to replace a received (not rejected) invoice is a conflict too.
    replace = _post_json(
        client, key_e1, build_invoice(folio="105"), empresaRefId="E1", reference="R-104", replace=True
    )
    assert replace.status_code == 409 and "only rejected or failed" in replace.json()["error"]["message"]


def test_replace_of_a_rejected_invoice(
    client: httpx.Client, key_e1: str, sessions: sessionmaker[Session], queued: Callable[[], int]
) -> None:
    first = _post_xml(client, key_e1, build_invoice(folio="106"), empresaRefId="E1", reference="R-106")
    invoice_id = first.json()["id"]
    with sessions.begin() as s:
        row = s.get(Invoice, invoice_id)
        assert row is not None
        row.state, row.error_kind = "rejected", "fiscal_data"
        row.errors = [{"code": "CFDI40143", "message": "RFC del receptor", "kind": "fiscal_data"}]
    fixed = build_invoice(folio="106", receptor_rfc="XAXX010101000", receptor_nombre="PUBLICO EN GENERAL",
                          receptor_regimen="616", uso_cfdi="S01")
    before = queued()
    res = _post_xml(client, key_e1, fixed, empresaRefId="E1", reference="R-106", replace="true",
                    reason="receptor corrected")
    assert res.status_code == 200, res.text
    assert res.json() == {"id": invoice_id, "outcome": "replaced", "state": "received", "published": True}
    assert queued() == before + 1
    view = client.get(f"/v1/invoices/{invoice_id}", headers={"X-API-Key": key_e1}).json()
    assert (view["state"], view["xmlVersion"], view["errors"]) == ("received", 2, [])
    with sessions() as s:
        row = s.get(Invoice, invoice_id)
        assert row is not None and row.xml == fixed
        audit = s.scalars(select(AuditLog).where(AuditLog.invoice_id == invoice_id)).one()
        assert (audit.action, audit.reason) == ("replace-xml", "receptor corrected")
        assert audit.actor.startswith("api-key:")


@pytest.mark.parametrize(
    ("xml", "params", "reason"),
    [
        (b"", {}, "empty"),
        (b"<cfdi:Comprobante", {}, "not_well_formed"),
        (b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>', {}, "dtd_forbidden"),
        (b'<?xml version="1.0" encoding="ISO-8859-1"?><a/>', {}, "not_utf8"),
        (b"<invoice/>", {}, "not_cfdi40"),
        (build_invoice(folio="107").replace(b'Sello="', b'Sellx="', 1), {}, "unsealed"),
        (build_invoice(folio="108"), {"empresaRefId": ""}, "missing_id"),
        (build_invoice(folio="109"), {"reference": " padded "}, "invalid_id"),
    ],
)
def test_every_intake_refusal_is_422_with_its_reason(
    client: httpx.Client, key_e1: str, xml: bytes, params: dict[str, str], reason: str,
    sessions: sessionmaker[Session],
) -> None:
    res = _post_xml(client, key_e1, xml, **{"empresaRefId": "E1", "reference": "R-422", **params})
    assert res.status_code == 422, res.text
    assert res.json()["error"]["reason"] == reason
    assert res.json()["error"]["message"]
    with sessions() as s:
        assert s.scalars(select(Invoice)).first() is None


def test_already_stamped_xml_is_refused(
    client: httpx.Client, key_e1: str, sessions: sessionmaker[Session]
) -> None:
    from tests.api.helpers import stamp_row

    first = _post_xml(client, key_e1, build_invoice(folio="110"), empresaRefId="E1", reference="R-110")
    _, stamped = stamp_row(sessions, first.json()["id"])
    res = _post_xml(client, key_e1, stamped, empresaRefId="E1", reference="R-111")
    assert res.status_code == 422 and res.json()["error"]["reason"] == "already_stamped"


@pytest.mark.parametrize(
    ("send", "fragment"),
    [
        ({"json": {"empresaRefId": "E1", "reference": "R", "xml": "%%%"}}, "base64"),
        ({"json": {"empresaRefId": "E1", "reference": "R"}}, "xml: Field required"),
        ({"json": {"empresaRefId": "E1", "reference": "R", "xml": "", "extra": 1}}, "extra"),
        ({"content": b"{not json", "headers": {"Content-Type": "application/json"}}, "JSON"),
    ],
)
def test_malformed_json_requests_are_422_invalid_request(
    client: httpx.Client, key_e1: str, send: dict[str, object], fragment: str
) -> None:
    kwargs = dict(send)
    headers = {"X-API-Key": key_e1, **kwargs.pop("headers", {})}  # type: ignore[dict-item]
    res = client.post("/v1/invoices", headers=headers, **kwargs)  # type: ignore[arg-type]
    assert res.status_code == 422, res.text
    assert res.json()["error"]["reason"] == "invalid_request"
    assert fragment in res.json()["error"]["message"]


def test_an_id_given_twice_differently_is_refused(client: httpx.Client, key_e1: str) -> None:
    res = client.post(
        "/v1/invoices", params={"empresaRefId": "E1", "reference": "A"}, content=build_invoice(folio="112"),
        headers={**XML, "X-API-Key": key_e1, "X-Reference": "B"},
    )
    assert res.status_code == 422
    assert res.json() == {"error": {
        "reason": "invalid_request",
        "message": "reference is given more than once with different values",
    }}


def test_other_content_types_are_415(client: httpx.Client, key_e1: str) -> None:
    res = client.post(
        "/v1/invoices", content=b"x", headers={"X-API-Key": key_e1, "Content-Type": "text/plain"}
    )
    assert res.status_code == 415 and res.json()["error"]["reason"] == "unsupported_media_type"
