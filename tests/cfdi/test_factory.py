"""build_invoice makes sealed, XSD-valid CFDI 4.0 whose amounts add up."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from decimal import Decimal

import pytest

from tests.cfdi.helpers import FACTORY_CASES, RICH, assert_valid
from worker.cfdi.csd import Csd
from worker.cfdi.factory import MEXICO_CITY, Concepto, build_invoice, mexico_city_now
from worker.cfdi.sealing import verify_seal
from worker.cfdi.xml import CFDI_NS, NS, PAGOS_NS, parse

FECHA = dt.datetime(2026, 11, 20, 12, 0, 0)
C = f"{{{CFDI_NS}}}"
D = Decimal


@pytest.mark.parametrize("case", sorted(FACTORY_CASES))
def test_xsd_valid(case: str, cfdi_schema) -> None:
    assert_valid(cfdi_schema, build_invoice(fecha=FECHA, seed=1, **FACTORY_CASES[case]))  # type: ignore[arg-type]


def test_300_conceptos_valid(cfdi_schema) -> None:
    data = build_invoice(fecha=FECHA, seed=1, conceptos=300)
    assert_valid(cfdi_schema, data)
    verify_seal(data)
    assert len(parse(data).findall(f"{C}Conceptos/{C}Concepto")) == 300


def _check_totals(data: bytes) -> None:
    root = parse(data)
    subtotal = descuento = D(0)
    traslados: dict[tuple[str, str | None], list[D]] = defaultdict(lambda: [D(0), D(0)])
    retenciones: dict[str, D] = defaultdict(D)
    for c in root.iterfind("cfdi:Conceptos/cfdi:Concepto", NS):
        importe = D(c.get("Importe"))
        assert importe == (D(c.get("Cantidad")) * D(c.get("ValorUnitario"))).quantize(D("0.01"))
        subtotal += importe
        desc = D(c.get("Descuento", "0"))
        descuento += desc
        for t in c.iterfind("cfdi:Impuestos/cfdi:Traslados/cfdi:Traslado", NS):
            assert D(t.get("Base")) == importe - desc
            if t.get("TipoFactor") != "Exento":
                assert D(t.get("Importe")) == (D(t.get("Base")) * D(t.get("TasaOCuota"))).quantize(D("0.01"))
            acc = traslados[(t.get("TipoFactor"), t.get("TasaOCuota"))]
            acc[0] += D(t.get("Base"))
            acc[1] += D(t.get("Importe", "0"))
        for r in c.iterfind("cfdi:Impuestos/cfdi:Retenciones/cfdi:Retencion", NS):
            retenciones[r.get("Impuesto")] += D(r.get("Importe"))
    assert D(root.get("SubTotal")) == subtotal
    assert D(root.get("Descuento", "0")) == descuento
    summary = root.find("cfdi:Impuestos", NS)
    total_tras = sum((v[1] for v in traslados.values()), D(0))
    total_ret = sum(retenciones.values(), D(0))
    if summary is not None:
        got = {(t.get("TipoFactor"), t.get("TasaOCuota")): [D(t.get("Base")), D(t.get("Importe", "0"))]
               for t in summary.iterfind("cfdi:Traslados/cfdi:Traslado", NS)}
        assert got == dict(traslados)
        got_ret = {
            r.get("Impuesto"): D(r.get("Importe"))
            for r in summary.iterfind("cfdi:Retenciones/cfdi:Retencion", NS)
        }
        assert got_ret == dict(retenciones)
        assert D(summary.get("TotalImpuestosTrasladados", "0")) == total_tras
        assert D(summary.get("TotalImpuestosRetenidos", "0")) == total_ret
    assert D(root.get("Total")) == subtotal - descuento + total_tras - total_ret


@pytest.mark.parametrize("case", ["one", "ten", "unicode", "rich"])
def test_totals_add_up(case: str) -> None:
    _check_totals(build_invoice(fecha=FECHA, seed=2, **FACTORY_CASES[case]))  # type: ignore[arg-type]


def test_known_amounts() -> None:
    data = build_invoice(fecha=FECHA, conceptos=[
        Concepto("Uno", cantidad=2, valor_unitario="100.00"),
        {"descripcion": "Dos", "cantidad": "1", "valor_unitario": "50.50", "descuento": "0.50"},
        Concepto("Tres", valor_unitario="10.00", tasa_iva="0.08"),
    ])
    root = parse(data)
    assert root.get("SubTotal") == "260.50"
    assert root.get("Descuento") == "0.50"
    imp = root.find(f"{C}Impuestos")
    assert imp.get("TotalImpuestosTrasladados") == "40.80"  # 250 x 16 % + 10 x 8 %
    rows = [(t.get("Base"), t.get("TasaOCuota"), t.get("Importe")) for t in imp.iter(f"{C}Traslado")]
    assert rows == [("250.00", "0.160000", "40.00"), ("10.00", "0.080000", "0.80")]
    assert root.get("Total") == "300.80"


def test_deterministic_with_seed_and_fecha() -> None:
    a = build_invoice(fecha=FECHA, seed=42, conceptos=5)
    assert a == build_invoice(fecha=FECHA, seed=42, conceptos=5)
    assert a != build_invoice(fecha=FECHA, seed=43, conceptos=5)


def test_fresh_folio_without_seed() -> None:
    folios = {parse(build_invoice(fecha=FECHA)).get("Folio") for _ in range(5)}
    assert len(folios) == 5


def test_default_fecha_is_recent_mexico_city_time() -> None:
    fecha = dt.datetime.strptime(parse(build_invoice()).get("Fecha"), "%Y-%m-%dT%H:%M:%S")
    now = dt.datetime.now(MEXICO_CITY).replace(tzinfo=None)
    assert now - dt.timedelta(minutes=3) <= fecha <= now  # never in the PAC's future
    assert mexico_city_now().tzinfo is None


def test_header_fields(emisor: Csd) -> None:
    root = parse(build_invoice(fecha=FECHA, serie="F", folio="0099", forma_pago="01", metodo_pago="PUE",
                               receptor_cp="01000", uso_cfdi="G01"))
    assert (root.get("Serie"), root.get("Folio"), root.get("Fecha")) == ("F", "0099", "2026-11-20T12:00:00")
    assert (root.get("TipoDeComprobante"), root.get("Moneda"), root.get("Exportacion")) == ("I", "MXN", "01")
    assert root.get("LugarExpedicion") == "06000"
    emi = root.find(f"{C}Emisor")
    assert (emi.get("Rfc"), emi.get("Nombre"), emi.get("RegimenFiscal")) == (emisor.rfc, emisor.name, "601")
    rec = root.find(f"{C}Receptor")
    assert rec.get("DomicilioFiscalReceptor") == "01000"
    assert rec.get("UsoCFDI") == "G01"


def test_pagos_amounts() -> None:
    root = parse(build_invoice(fecha=FECHA, seed=3, pagos=True, conceptos=RICH[1:4]))
    assert (root.get("TipoDeComprobante"), root.get("Moneda"), root.get("Total")) == ("P", "XXX", "0")
    assert root.find(f"{C}Receptor").get("UsoCFDI") == "CP01"
    assert root.get("FormaPago") is None and root.get("MetodoPago") is None
    p = f"{{{PAGOS_NS}}}"
    pagos = root.find(f"{C}Complemento/{p}Pagos")
    pago = pagos.find(f"{p}Pago")
    docs = pago.findall(f"{p}DoctoRelacionado")
    assert len(docs) == 3
    assert D(pago.get("Monto")) == sum(D(d.get("ImpPagado")) for d in docs)
    totales = pagos.find(f"{p}Totales")
    assert totales.get("MontoTotalPagos") == pago.get("Monto")
    # 250 exento, 3 x 19.99 at 8 %, 42 at 0 %
    assert totales.get("TotalTrasladosBaseIVAExento") == "250.00"
    assert (totales.get("TotalTrasladosBaseIVA8"), totales.get("TotalTrasladosImpuestoIVA8")) == (
        "59.97", "4.80"
    )
    assert (totales.get("TotalTrasladosBaseIVA0"), totales.get("TotalTrasladosImpuestoIVA0")) == (
        "42.00", "0.00"
    )
    assert pago.get("Monto") == "356.77"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"conceptos": 0}, "at least one"),
        ({"conceptos": []}, "at least one"),
        ({"descripcion": "a|b"}, "must not contain"),
        ({"receptor_nombre": "  "}, "non-blank"),
        ({"moneda": "USD"}, "needs tipo_cambio"),
        ({"conceptos": [Concepto("x", valor_unitario="1", descuento="2")]}, "exceeds"),
        ({"conceptos": [Concepto("x", tasa_iva=None)]}, "needs tasa_iva"),
        ({"pagos": True, "conceptos": RICH[:1]}, "traslados only"),
    ],
)
def test_bad_input_is_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_invoice(fecha=FECHA, **kwargs)
