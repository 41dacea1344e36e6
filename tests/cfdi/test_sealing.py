"""Sello: made with our CSD or SAT's test CSD, and every way verification fails."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from tests.cfdi.helpers import assert_valid
from worker.cfdi.csd import Csd
from worker.cfdi.factory import build_invoice
from worker.cfdi.sealing import (
    CadenaError,
    SealError,
    cadena_original,
    normalize_space,
    seal,
    verify_seal,
)
from worker.cfdi.xml import CFDI_NS, parse

FECHA = dt.datetime(2026, 11, 20, 9, 0, 0)
C = f"{{{CFDI_NS}}}"


def test_normalize_space_is_xpath_not_python() -> None:
    assert normalize_space("  a \t\r\n b  ") == "a b"
    # NBSP and ideographic space are not XML white space: they stay
    assert normalize_space("\u00a0a\u3000 b") == "\u00a0a\u3000 b"


def test_resealing_sat_sample_with_sat_csd_gives_the_same_sello(shared_dir: Path, eku_csd: Csd) -> None:
    """PKCS#1 v1.5 is deterministic: our cadena + SAT's key must reproduce CfdiUtils' Sello."""
    data = (shared_dir / "cfdi/samples/cfdiutils_created-with-discounts-40.xml").read_bytes()
    original = parse(data)
    resealed = parse(seal(data, eku_csd))
    assert resealed.get("Sello") == original.get("Sello")
    assert resealed.get("Certificado") == original.get("Certificado")
    assert resealed.get("NoCertificado") == "30001000000500003416"


def test_invoice_sealed_with_sat_csd(eku_csd: Csd, cfdi_schema) -> None:
    data = build_invoice(emisor=eku_csd, fecha=FECHA, seed=1, conceptos=3)
    verify_seal(data)
    assert_valid(cfdi_schema, data)
    root = parse(data)
    assert root.find(f"{C}Emisor").get("Rfc") == "EKU9003173C9"
    # and the Sello is RSA-SHA256 over the cadena with SAT's certificate's key
    import base64

    eku_csd.cert.public_key().verify(
        base64.b64decode(root.get("Sello")), cadena_original(root).encode(), padding.PKCS1v15(),
        hashes.SHA256(),
    )


def test_seal_sets_the_three_attributes(emisor: Csd) -> None:
    root = parse(build_invoice(fecha=FECHA, seed=2))
    assert root.get("NoCertificado") == emisor.no_certificado
    assert root.get("Certificado") == emisor.certificado_b64
    assert len(root.get("Sello")) == 344  # base64 of a 256-byte RSA-2048 signature


def test_seal_output_is_utf8_with_declaration(emisor: Csd) -> None:
    data = build_invoice(fecha=FECHA, seed=2, descripcion="Ñandú – 東京")
    assert data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<cfdi:Comprobante')
    assert "Ñandú – 東京 1".encode() in data


def _tamper(data: bytes, old: bytes, new: bytes) -> bytes:
    assert old in data
    return data.replace(old, new, 1)


def test_tampered_document_fails_302(emisor: Csd) -> None:
    data = build_invoice(fecha=FECHA, seed=3, receptor_cp="01000")
    bad = _tamper(data, b'DomicilioFiscalReceptor="01000"', b'DomicilioFiscalReceptor="01001"')
    with pytest.raises(SealError, match="does not verify") as info:
        verify_seal(bad)
    assert info.value.code == "302"


def test_whitespace_only_change_still_verifies(emisor: Csd) -> None:
    """normalize-space makes extra spaces inside a value irrelevant to the Sello."""
    data = build_invoice(fecha=FECHA, seed=3, receptor_nombre="ACME SA")
    verify_seal(_tamper(data, b'Nombre="ACME SA"', b'Nombre="  ACME   SA "'))


def test_other_certificate_fails(emisor: Csd, pac: Csd) -> None:
    data = build_invoice(fecha=FECHA, seed=4)
    swapped = _tamper(data, emisor.certificado_b64.encode(), pac.certificado_b64.encode())
    swapped = _tamper(swapped, emisor.no_certificado.encode(), pac.no_certificado.encode())
    with pytest.raises(SealError, match="does not verify"):
        verify_seal(swapped, check_emisor=False)


def test_nocertificado_mismatch(emisor: Csd) -> None:
    data = build_invoice(fecha=FECHA, seed=5)
    bad = _tamper(data, b'NoCertificado="30001000000500099001"', b'NoCertificado="30001000000500099009"')
    with pytest.raises(SealError, match="NoCertificado .* is not the serial"):
        verify_seal(bad)


@pytest.mark.parametrize(
    ("attr", "value", "message"),
    [
        ("Sello", "", "Sello is missing"),
        ("Sello", "not*base64", "Sello is not valid base64"),
        ("Certificado", "", "Certificado is missing"),
        ("Certificado", "QUJD", "not a DER X.509"),
    ],
)
def test_malformed_sello_or_certificado(attr: str, value: str, message: str) -> None:
    root = parse(build_invoice(fecha=FECHA, seed=6))
    root.set(attr, value)
    with pytest.raises(SealError, match=message) as info:
        verify_seal(root)
    assert info.value.code == "302"


def test_emisor_rfc_not_the_certificates_is_303(emisor: Csd) -> None:
    root = parse(build_invoice(fecha=FECHA, seed=7))
    root.find(f"{C}Emisor").set("Rfc", "EKU9003173C9")
    resealed = parse(seal(root, emisor, check_rfc=False))
    with pytest.raises(SealError, match="not the certificate's RFC") as info:
        verify_seal(resealed)
    assert info.value.code == "303"
    verify_seal(resealed, check_emisor=False)


def test_seal_refuses_wrong_rfc_and_stamped_documents(emisor: Csd, eku_csd: Csd, shared_dir: Path) -> None:
    with pytest.raises(SealError, match="not the CSD's RFC"):
        seal(build_invoice(fecha=FECHA, seed=8), eku_csd)
    stamped = (shared_dir / "cfdi/samples/cfdiutils_cfdi40-valid.xml").read_bytes()
    with pytest.raises(SealError, match="already stamped"):
        seal(stamped, eku_csd)


def test_not_a_cfdi40() -> None:
    with pytest.raises(CadenaError, match="not a CFDI 4.0"):
        cadena_original(b"<x/>")
    cfdi33 = b'<cfdi:Comprobante xmlns:cfdi="http://www.sat.gob.mx/cfd/4" Version="3.3"/>'
    with pytest.raises(CadenaError, match="expected '4.0'"):
        cadena_original(cfdi33)
    with pytest.raises(SealError, match="expected '4.0'"):
        verify_seal(cfdi33)


def test_cadena_starts_and_ends_like_sat(emisor: Csd) -> None:
    cadena = cadena_original(build_invoice(fecha=FECHA, seed=9, serie="A", folio="77"))
    assert cadena.startswith(f"||4.0|A|77|2026-11-20T09:00:00|03|{emisor.no_certificado}|")
    assert cadena.endswith("||") and not cadena.endswith("|||")
