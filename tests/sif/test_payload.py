"""OK and NOK bodies: exact bytes in base64, en-dash error lines, the fiscal-data flag."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable

import pytest
from sqlalchemy.orm import Session, sessionmaker

from worker.cfdi.xml import NS, parse
from worker.db.models import Invoice, Notification
from worker.finkok.errors import classify, message_of
from worker.sif.payload import PayloadError, body_for, build_nok, build_ok, format_error
from worker.sif.schema import validate_body

from .conftest import MakeRows

SAT_UUID = "1044D724-23CB-43A2-9AA7-C08B73FF4381"
INVOICE_ID = "6f1c2a7e-4b7d-4c1e-9a55-0d2f3b1e8c90"
DATOS = {"rfc": "RARA760229C54", "usoCfdi": "G03", "regimenFiscal": "612", "codigoPostal": "01000"}


def test_build_ok_carries_exact_bytes_and_leading_zeros() -> None:
    xml = '<?xml version="1.0" encoding="UTF-8"?>\r\n<cfdi:Comprobante Nombre="Ñandú"/>\n'.encode()
    pdf = b"%PDF-1.4\n\x00\xff binary"
    body = build_ok(reference="0016921514", sat_uuid=SAT_UUID, pedidoga="123435",
                    stamped_xml=xml, pdf=pdf, datos_fiscales=DATOS)
    validate_body(body)
    assert base64.b64decode(body["xml"]) == xml
    assert base64.b64decode(body["pdf"]) == pdf
    assert body["folio"] == SAT_UUID
    assert body["type"] == "S" and body["status"] == "OK" and body["pedidoga"] == "123435"
    assert body["datosFiscales"] == DATOS
    assert body["datosFiscales"]["codigoPostal"] == "01000"
    assert "error" not in body and "errorDatosFiscales" not in body


def test_build_ok_refuses_numbers_that_lost_their_zeros() -> None:
    with pytest.raises(PayloadError, match="codigoPostal"):
        build_ok(reference="r", sat_uuid=SAT_UUID, pedidoga=None, stamped_xml=b"<x/>", pdf=b"%PDF",
                 datos_fiscales={**DATOS, "codigoPostal": 1000})
    with pytest.raises(PayloadError, match="regimenFiscal"):
        build_ok(reference="r", sat_uuid=SAT_UUID, pedidoga=None, stamped_xml=b"<x/>", pdf=b"%PDF",
                 datos_fiscales={k: v for k, v in DATOS.items() if k != "regimenFiscal"})


def test_pedidoga_is_omitted_when_unknown_and_type_is_configurable() -> None:
    body = build_nok(reference="r", invoice_id=INVOICE_ID, pedidoga=None, type_="F",
                     errors=[{"code": "301", "message": "XML mal formado", "kind": "permanent"}])
    assert "pedidoga" not in body and body["type"] == "F"
    validate_body(body)


def test_build_nok_one_en_dash_line_per_error_and_folio_is_our_id() -> None:
    errors = [
        {"code": "CFDI40145", "message": "El campo Nombre del receptor no coincide", "kind": "fiscal_data"},
        {"code": "301", "message": "XML mal formado", "kind": "permanent"},
    ]
    body = build_nok(reference="0016921514", invoice_id=INVOICE_ID, pedidoga="p1", errors=errors)
    validate_body(body)
    assert body["error"] == [
        "CFDI40145 \u2013 El campo Nombre del receptor no coincide",
        "301 \u2013 XML mal formado",
    ]
    assert body["folio"] == INVOICE_ID
    assert body["status"] == "NOK" and body["type"] == "S"
    assert body["errorDatosFiscales"] == 1
    assert "xml" not in body and "pdf" not in body and "datosFiscales" not in body


def test_format_error_with_one_part_missing() -> None:
    assert format_error({"code": "", "message": "sin código"}) == "sin código"
    assert format_error({"code": "708", "message": None}) == "708"
    with pytest.raises(PayloadError):
        format_error({"code": "", "message": ""})


def test_nok_needs_an_error() -> None:
    with pytest.raises(PayloadError):
        build_nok(reference="r", invoice_id=INVOICE_ID, pedidoga=None, errors=[])


def _finkok_error(code: str) -> dict[str, str]:
    """An error as the stamping pipeline records it: the Finkok catalog gives the kind."""
    return {"code": code, "message": message_of(code) or "mensaje del SAT", "kind": str(classify(code))}


@pytest.mark.parametrize("code", [f"CFDI{n}" for n in range(40143, 40162)])
def test_receptor_fiscal_data_codes_set_the_flag(code: str) -> None:
    body = build_nok(reference="r", invoice_id=INVOICE_ID, pedidoga=None,
                     errors=[_finkok_error("CFDI40101"), _finkok_error(code)])
    validate_body(body)
    assert body["errorDatosFiscales"] == 1
    assert body["error"][1].startswith(f"{code} \u2013 ")


@pytest.mark.parametrize(
    "code", ["CFDI40142", "CFDI40162", "CFDI40101", "301", "302", "705", "708", "CFDI33118"]
)
def test_other_codes_do_not(code: str) -> None:
    body = build_nok(reference="r", invoice_id=INVOICE_ID, pedidoga=None, errors=[_finkok_error(code)])
    validate_body(body)
    assert body["errorDatosFiscales"] == 0


def test_body_for_nok_from_rows(sessions: sessionmaker[Session], add_nok: MakeRows) -> None:
    invoice_id, notification_id = add_nok(errors=[
        {"code": "CFDI40157", "message": "RegimenFiscalReceptor no corresponde", "kind": "fiscal_data"},
    ], reference="0016921514")
    with sessions() as s:
        invoice = s.get(Invoice, invoice_id)
        note = s.get(Notification, notification_id)
        assert invoice is not None and note is not None
        body = body_for(invoice, note)
    validate_body(body)
    assert body == {
        "reference": "0016921514", "status": "NOK", "folio": invoice_id, "type": "S",
        "pedidoga": "23117640210000056300",
        "error": ["CFDI40157 \u2013 RegimenFiscalReceptor no corresponde"], "errorDatosFiscales": 1,
    }


def test_body_for_failed_invoice_without_errors_still_says_why(
    sessions: sessionmaker[Session], add_nok: MakeRows
) -> None:
    invoice_id, notification_id = add_nok(errors=[], state="failed", error_kind="account")
    with sessions() as s:
        body = body_for(s.get(Invoice, invoice_id), s.get(Notification, notification_id))  # type: ignore[arg-type]
    validate_body(body)
    assert body["errorDatosFiscales"] == 0
    assert body["error"] == ["La factura no pudo timbrarse (estado failed, causa account)"]


def test_body_for_refuses_an_ok_without_stamped_xml(
    sessions: sessionmaker[Session], add_nok: MakeRows
) -> None:
    invoice_id, notification_id = add_nok()
    with sessions.begin() as s:
        s.get(Notification, notification_id).status = "OK"  # type: ignore[union-attr]
    with sessions() as s, pytest.raises(PayloadError, match="no stamped XML"):
        body_for(s.get(Invoice, invoice_id), s.get(Notification, notification_id))  # type: ignore[arg-type]


def test_body_for_ok_from_rows(
    sessions: sessionmaker[Session],
    add_ok: Callable[..., tuple[str, str]],
    stamped_cfdi: Callable[[str], bytes],
) -> None:
    sat_uuid = str(uuid.uuid4()).upper()
    stamped = stamped_cfdi(sat_uuid)
    invoice_id, notification_id = add_ok(stamped, sat_uuid, reference="0016921514")
    with sessions() as s:
        body = body_for(s.get(Invoice, invoice_id), s.get(Notification, notification_id))  # type: ignore[arg-type]
    validate_body(body)
    assert body["status"] == "OK" and body["folio"] == sat_uuid and body["reference"] == "0016921514"
    assert base64.b64decode(body["xml"]) == stamped  # the exact stamped bytes
    assert base64.b64decode(body["pdf"]).startswith(b"%PDF")
    receptor = parse(stamped).find("cfdi:Receptor", NS)
    assert receptor is not None
    assert body["datosFiscales"] == {
        "rfc": receptor.get("Rfc"),
        "usoCfdi": receptor.get("UsoCFDI"),
        "regimenFiscal": receptor.get("RegimenFiscalReceptor"),
        "codigoPostal": receptor.get("DomicilioFiscalReceptor"),
    }
    assert body["datosFiscales"]["codigoPostal"] == "06000"  # leading zero kept
