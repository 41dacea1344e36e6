"""Our cadena original equals SAT's own XSLT (cadenaoriginal_4_0.xslt, run by libxslt).

Checked on every sample CFDI in ../shared/cfdi/samples, on our generated invoices (every
option of the factory), on random attribute values (whitespace, Unicode), and on node
shapes the samples lack. Samples with a genuine Sello must verify with our verify_seal.
"""

from __future__ import annotations

import copy
import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from tests.cfdi.helpers import FACTORY_CASES, RICH
from worker.cfdi.factory import build_invoice
from worker.cfdi.sealing import UnsupportedNodeError, cadena_original, verify_seal
from worker.cfdi.tfd import find_tfd, tfd_cadena_original
from worker.cfdi.xml import CFDI_NS, parse

FECHA = dt.datetime(2026, 11, 20, 10, 30, 0)
C = f"{{{CFDI_NS}}}"


def sat_cadena(xslt: etree.XSLT, doc: bytes | etree._Element) -> str:
    root = parse(doc) if isinstance(doc, bytes) else doc
    return str(xslt(root.getroottree()))


def test_every_sample_matches_sat_xslt(samples: list[Path], cadena_xslt: etree.XSLT) -> None:
    for path in samples:
        data = path.read_bytes()
        assert cadena_original(data) == sat_cadena(cadena_xslt, data), path.name


def test_genuine_sample_seals_verify(samples: list[Path]) -> None:
    sealed = [p for p in samples if parse(p.read_bytes()).get("Sello")]
    assert len(sealed) >= 3  # cfdiutils valid + discounts, satcfdi signed-tfd
    for path in sealed:
        verify_seal(path.read_bytes())


def test_sample_tfd_cadena_matches_sat_xslt(samples: list[Path], tfd_xslt: etree.XSLT) -> None:
    stamped = [p for p in samples if find_tfd(p.read_bytes()) is not None]
    assert stamped
    for path in stamped:
        tfd = find_tfd(path.read_bytes())
        standalone = etree.ElementTree(etree.fromstring(etree.tostring(tfd)))
        assert tfd_cadena_original(tfd) == str(tfd_xslt(standalone)), path.name


@pytest.mark.parametrize("case", sorted(FACTORY_CASES))
def test_generated_invoices_match_sat_xslt(case: str, cadena_xslt: etree.XSLT) -> None:
    data = build_invoice(fecha=FECHA, seed=7, **FACTORY_CASES[case])  # type: ignore[arg-type]
    assert cadena_original(data) == sat_cadena(cadena_xslt, data)
    verify_seal(data)


def test_empty_optional_and_missing_required(cadena_xslt: etree.XSLT) -> None:
    """Optional-but-empty still gives '|'; a missing required attribute gives '|' too."""
    root = parse(build_invoice(fecha=FECHA, seed=1, conceptos=2))
    root.set("Serie", "")
    root.set("Confirmacion", "")
    concepto = root.find(f"{C}Conceptos/{C}Concepto")
    del concepto.attrib["ClaveUnidad"]
    concepto.set("NoIdentificacion", " \t ")
    ours = cadena_original(root)
    assert ours == sat_cadena(cadena_xslt, root)
    assert "|4.0||" in ours  # Version then the empty Serie


def test_unknown_and_tfd_elements_give_their_text(cadena_xslt: etree.XSLT) -> None:
    """XSLT's built-in rules: no template -> the element's text content, unnormalized."""
    root = parse(build_invoice(fecha=FECHA, seed=2, pagos=True))
    comp = root.find(f"{C}Complemento")
    extra = etree.SubElement(comp, "{urn:example:private}Extra", Attr="ignored")
    extra.text = "  texto  privado "
    etree.SubElement(extra, "{urn:example:private}Inner").tail = "\ncola"
    tfd = etree.SubElement(
        comp, "{http://www.sat.gob.mx/TimbreFiscalDigital}TimbreFiscalDigital", Version="1.1"
    )
    tfd.text = " t "
    etree.SubElement(root, f"{C}Addenda").text = "never in the cadena"
    ours = cadena_original(root)
    assert ours == sat_cadena(cadena_xslt, root)
    assert "  texto  privado \ncola t ||" in ours
    assert "never" not in ours


def test_parte_nested_and_comprobante_children_order(cadena_xslt: etree.XSLT) -> None:
    root = parse(build_invoice(fecha=FECHA, seed=3, conceptos=RICH[:1]))
    parte = root.find(f"{C}Conceptos/{C}Concepto/{C}Parte")
    etree.SubElement(parte, f"{C}InformacionAduanera", NumeroPedimento="10  47  3807  8003832")
    etree.SubElement(parte, f"{C}InformacionAduanera", NumeroPedimento="10  47  3807  8003833")
    assert cadena_original(root) == sat_cadena(cadena_xslt, root)


def test_unsupported_sat_complement_is_refused() -> None:
    root = parse(build_invoice(fecha=FECHA, seed=4))
    comp = etree.SubElement(root, f"{C}Complemento")
    etree.SubElement(comp, "{http://www.sat.gob.mx/nomina12}Nomina", Version="1.2")
    with pytest.raises(UnsupportedNodeError, match="Nomina"):
        cadena_original(root)


_xml_char = st.characters(
    blacklist_categories=("Cs",),
    blacklist_characters=[chr(i) for i in range(32) if i not in (9, 10, 13)] + ["\ufffe", "\uffff"],
)
_values = st.one_of(
    st.text(_xml_char, max_size=30),
    st.text(st.sampled_from(list(" \t\r\n\u00a0\u3000\u2028aÑ東|")), max_size=12),
)
_ATTRS = [
    ("", "Serie"), ("", "Folio"), ("", "CondicionesDePago"), ("", "Confirmacion"),
    ("Emisor", "Nombre"), ("Emisor", "FacAtrAdquirente"), ("Receptor", "Nombre"),
    ("Receptor", "NumRegIdTrib"), ("Conceptos/Concepto", "Descripcion"),
    ("Conceptos/Concepto", "Unidad"), ("Conceptos/Concepto/Impuestos/Traslados/Traslado", "TasaOCuota"),
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(st.tuples(st.sampled_from(_ATTRS), _values), min_size=1, max_size=6))
def test_random_values_match_sat_xslt(
    values: list, cadena_xslt: etree.XSLT, base_doc: etree._Element
) -> None:
    root = copy.deepcopy(base_doc)
    for (path, attr), value in values:
        el = root.find("/".join(C + p for p in path.split("/"))) if path else root
        el.set(attr, value)
    assert cadena_original(root) == sat_cadena(cadena_xslt, root)
    # and after a serialization round trip (entity-escaped whitespace must survive)
    again = etree.fromstring(etree.tostring(root))
    assert cadena_original(again) == sat_cadena(cadena_xslt, again)


@pytest.fixture(scope="module")
def base_doc() -> etree._Element:
    return parse(build_invoice(fecha=FECHA, seed=5, conceptos=2))


def test_factory_amounts_are_exact_strings() -> None:
    data = build_invoice(fecha=FECHA, seed=6, conceptos=RICH[2:3])
    concepto = parse(data).find(f"{C}Conceptos/{C}Concepto")
    assert concepto.get("Importe") == "59.97"
    assert Decimal(concepto.get("Importe")) == Decimal("3") * Decimal("19.99")
