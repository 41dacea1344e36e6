"""add_tfd stamps like a PAC: valid TFD 1.1, SelloSAT verifies, the rest of the bytes kept."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import pytest
from cryptography import x509
from lxml import etree

from tests.cfdi.helpers import assert_valid
from worker.cfdi.csd import Csd
from worker.cfdi.factory import build_invoice
from worker.cfdi.sealing import verify_seal
from worker.cfdi.tfd import TfdError, add_tfd, find_tfd, tfd_cadena_original, verify_tfd
from worker.cfdi.xml import parse

FECHA = dt.datetime(2026, 11, 20, 9, 0, 0)
UUID = "6f35d3b5-3651-5370-bc2c-14cdbe384cd7"
STAMPED_AT = "2026-11-20T09:00:05"


def _stamp(data: bytes, pac: Csd, **kw: object) -> bytes:
    return add_tfd(data, uuid=UUID, fecha_timbrado=STAMPED_AT, pac=pac, **kw)  # type: ignore[arg-type]


def _without(stamped: bytes, start: bytes, end: bytes) -> bytes:
    i = stamped.index(start)
    j = stamped.index(end, i) + len(end)
    return stamped[:i] + stamped[j:]


def test_stamp_our_invoice(pac: Csd, cfdi_schema, tfd_xslt: etree.XSLT) -> None:
    sealed = build_invoice(fecha=FECHA, seed=1, conceptos=2)
    stamped = _stamp(sealed, pac)
    assert_valid(cfdi_schema, stamped)
    verify_seal(stamped)  # the TFD does not change the comprobante's cadena
    verify_tfd(stamped, pac.cert)
    tfd = find_tfd(stamped)
    assert tfd is not None
    assert tfd.get("UUID") == UUID.upper()
    assert tfd.get("FechaTimbrado") == STAMPED_AT
    assert tfd.get("RfcProvCertif") == "SPR190613I52"
    assert tfd.get("NoCertificadoSAT") == pac.no_certificado
    assert tfd.get("SelloCFD") == parse(sealed).get("Sello")
    cadena = tfd_cadena_original(tfd)
    assert cadena == (
        f"||1.1|{UUID.upper()}|{STAMPED_AT}|SPR190613I52|{tfd.get('SelloCFD')}|{pac.no_certificado}||"
    )
    standalone = etree.ElementTree(etree.fromstring(etree.tostring(tfd)))
    assert cadena == str(tfd_xslt(standalone))
    # a new Complemento was inserted before </cfdi:Comprobante>; nothing else changed
    assert stamped.endswith(b"</cfdi:Complemento>\n</cfdi:Comprobante>")
    assert _without(stamped, b"  <cfdi:Complemento>", b"</cfdi:Complemento>\n") == sealed


def test_stamp_with_leyenda_and_datetime(pac: Csd, cfdi_schema, tfd_xslt: etree.XSLT) -> None:
    stamped = add_tfd(
        build_invoice(fecha=FECHA, seed=2), uuid=uuid.UUID(UUID),
        fecha_timbrado=dt.datetime(2026, 11, 20, 9, 1, 2),
        pac=pac, rfc_prov_certif="CVD110412TF6", leyenda="Leyenda   de prueba del SAT",
    )
    assert_valid(cfdi_schema, stamped)
    tfd = find_tfd(stamped)
    assert "|CVD110412TF6|Leyenda de prueba del SAT|" in tfd_cadena_original(tfd)
    assert tfd_cadena_original(tfd) == str(tfd_xslt(etree.ElementTree(etree.fromstring(etree.tostring(tfd)))))
    verify_tfd(stamped, pac.cert)


def test_stamp_into_existing_complemento(pac: Csd, cfdi_schema) -> None:
    sealed = build_invoice(fecha=FECHA, seed=3, pagos=True)
    stamped = _stamp(sealed, pac)
    assert_valid(cfdi_schema, stamped)
    verify_seal(stamped)
    comp = parse(stamped).find("{http://www.sat.gob.mx/cfd/4}Complemento")
    assert [etree.QName(el).localname for el in comp] == ["Pagos", "TimbreFiscalDigital"]
    assert _without(stamped, b"<tfd:TimbreFiscalDigital", b"/>") == sealed


def test_stamp_samples(samples: list[Path], pac: Csd, cfdi_schema) -> None:
    """Every sealed, unstamped sample takes a TFD; the emisor's Sello still verifies."""
    done = 0
    for path in samples:
        data = path.read_bytes()
        root = parse(data)
        if not root.get("Sello") or find_tfd(root) is not None:
            continue
        stamped = _stamp(data, pac)
        verify_seal(stamped)
        verify_tfd(stamped, pac.cert)
        assert_valid(cfdi_schema, stamped)
        done += 1
    assert done >= 1


def test_empty_self_closing_complemento(pac: Csd) -> None:
    sealed = build_invoice(fecha=FECHA, seed=4)
    with_empty = sealed.replace(b"</cfdi:Comprobante>", b'<cfdi:Complemento  a=">"/></cfdi:Comprobante>')
    stamped = _stamp(with_empty, pac)
    assert b'<cfdi:Complemento  a=">"><tfd:TimbreFiscalDigital' in stamped
    assert stamped.endswith(b"/></cfdi:Complemento></cfdi:Comprobante>")
    verify_tfd(stamped, pac.cert)


def test_before_addenda_and_default_namespace(pac: Csd) -> None:
    sealed = build_invoice(fecha=FECHA, seed=5)
    with_addenda = sealed.replace(
        b"</cfdi:Comprobante>", b"  <cfdi:Addenda><x>1</x></cfdi:Addenda>\n</cfdi:Comprobante>"
    )
    stamped = _stamp(with_addenda, pac)
    kids = [etree.QName(el).localname for el in parse(stamped)]
    assert kids[-2:] == ["Complemento", "Addenda"]
    verify_seal(stamped)
    # a document using the default namespace gets unprefixed cfdi elements
    unprefixed = sealed.replace(b"<cfdi:", b"<").replace(b"</cfdi:", b"</").replace(b"xmlns:cfdi=", b"xmlns=")
    stamped2 = _stamp(unprefixed, pac)
    assert b"<Complemento><tfd:TimbreFiscalDigital" in stamped2
    verify_seal(stamped2)
    verify_tfd(stamped2, pac.cert)


def test_xsi_declared_on_tfd_when_missing(pac: Csd) -> None:
    sealed = build_invoice(fecha=FECHA, seed=6)
    root = parse(sealed)
    no_xsi = etree.Element(root.tag, nsmap={"cfdi": root.nsmap["cfdi"]}, attrib={
        k: v for k, v in root.attrib.items() if not k.startswith("{")
    })
    no_xsi.extend(list(root))
    stamped = _stamp(etree.tostring(no_xsi), pac)
    tfd = find_tfd(stamped)
    assert tfd.get("{http://www.w3.org/2001/XMLSchema-instance}schemaLocation", "").startswith(
        "http://www.sat.gob.mx/TimbreFiscalDigital "
    )


def test_refusals(pac: Csd) -> None:
    sealed = build_invoice(fecha=FECHA, seed=7)
    stamped = _stamp(sealed, pac)
    with pytest.raises(TfdError, match="already carries"):
        _stamp(stamped, pac)
    unsealed = parse(sealed)
    unsealed.set("Sello", "")
    with pytest.raises(TfdError, match="not sealed"):
        _stamp(etree.tostring(unsealed), pac)
    with pytest.raises(TfdError, match="UUID"):
        add_tfd(sealed, uuid="nope", fecha_timbrado=STAMPED_AT, pac=pac)
    with pytest.raises(ValueError):
        add_tfd(sealed, uuid=UUID, fecha_timbrado="20/11/2026", pac=pac)


def test_verify_tfd_failures(pac: Csd, emisor: Csd) -> None:
    stamped = _stamp(build_invoice(fecha=FECHA, seed=8), pac)
    with pytest.raises(TfdError, match="does not verify"):
        verify_tfd(stamped, emisor.cert)
    tampered = stamped.replace(STAMPED_AT.encode(), b"2026-11-20T09:00:06")
    with pytest.raises(TfdError, match="does not verify"):
        verify_tfd(tampered, pac.cert)
    with pytest.raises(TfdError, match="not stamped"):
        verify_tfd(build_invoice(fecha=FECHA, seed=8), pac.cert)


def test_finkok_demo_sample_sellosat(shared_dir: Path) -> None:
    """The real Finkok demo stamp verifies with SAT's public test certificate."""
    data = (shared_dir / "cfdi/samples/cfdiutils_cfdi40-valid.xml").read_bytes()
    sat = x509.load_der_x509_certificate((shared_dir / "cfdi/csd/30001000000500003456.cer").read_bytes())
    verify_tfd(data, sat)
    verify_seal(data)
