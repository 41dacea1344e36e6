"""extract() returns the stamped CFDI's values exactly as written."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest

from tests.cfdi.helpers import RICH
from worker.cfdi.csd import Csd
from worker.cfdi.extract import NotStampedError, extract, receptor_fiscal_data
from worker.cfdi.factory import build_invoice
from worker.cfdi.tfd import add_tfd, find_tfd, tfd_cadena_original

FECHA = dt.datetime(2026, 11, 20, 8, 30, 0)
UUID = "0B9D1E0C-6A3B-4F1E-9C2D-3E4F5A6B7C8D"


def _stamp(data: bytes, pac: Csd) -> bytes:
    return add_tfd(data, uuid=UUID, fecha_timbrado="2026-11-20T08:31:02", pac=pac)


def test_generated_invoice(pac: Csd, emisor: Csd) -> None:
    sealed = build_invoice(
        fecha=FECHA, seed=1, conceptos=RICH, serie="F", folio="00042", receptor_cp="01000",
        receptor_regimen="612", uso_cfdi="G01", moneda="USD", tipo_cambio="17.2345",
        condiciones_de_pago="Contado", relacionados=["ED1752FE-E865-4FF2-BFE1-0F552E770DC9"],
        tipo_relacion="07", informacion_global=("04", "11", "2026"),
    )
    cfdi = extract(_stamp(sealed, pac))
    assert cfdi.uuid == UUID
    assert (cfdi.tfd.fecha_timbrado, cfdi.tfd.rfc_prov_certif) == ("2026-11-20T08:31:02", "SPR190613I52")
    assert cfdi.tfd.no_certificado_sat == pac.no_certificado
    assert cfdi.tfd.sello_cfd == cfdi.comprobante.sello
    assert cfdi.tfd.cadena_original == tfd_cadena_original(find_tfd(_stamp(sealed, pac)))
    comp = cfdi.comprobante
    assert (comp.serie, comp.folio, comp.fecha, comp.tipo_de_comprobante) == (
        "F", "00042", "2026-11-20T08:30:00", "I"
    )
    assert (comp.moneda, comp.tipo_cambio, comp.forma_pago, comp.metodo_pago) == (
        "USD", "17.2345", "03", "PUE"
    )
    assert (comp.lugar_expedicion, comp.exportacion, comp.condiciones_de_pago) == ("06000", "01", "Contado")
    assert comp.no_certificado == emisor.no_certificado
    assert comp.total_dec == comp.subtotal_dec - comp.descuento_dec \
        + Decimal(cfdi.impuestos.total_trasladados) \
        - Decimal(cfdi.impuestos.total_retenidos)
    assert (cfdi.emisor.rfc, cfdi.emisor.nombre, cfdi.emisor.regimen_fiscal) == (
        emisor.rfc, emisor.name, "601"
    )
    r = cfdi.receptor
    assert (r.rfc, r.uso_cfdi, r.regimen_fiscal, r.domicilio_fiscal) == (
        "URE180429TM6", "G01", "612", "01000"
    )
    assert cfdi.relacionados[0].tipo_relacion == "07"
    assert cfdi.relacionados[0].uuids == ("ED1752FE-E865-4FF2-BFE1-0F552E770DC9",)
    assert cfdi.informacion_global is not None and cfdi.informacion_global.anio == "2026"
    first = cfdi.conceptos[0]
    assert (first.clave_prod_serv, first.no_identificacion, first.cantidad, first.clave_unidad) == (
        "01010101", "A-1", "1.5", "KGM")
    assert (first.valor_unitario, first.importe, first.descuento, first.objeto_imp) == (
        "1500.00", "2250.00", "10.00", "02")
    assert first.descripcion == "Acero  con\tespacios  "
    assert [(t.impuesto, t.tasa_o_cuota, t.importe) for t in first.retenciones] == [
        ("001", "0.100000", "224.00"), ("002", "0.106667", "238.93")]
    assert first.informacion_aduanera == ("15  48  4567  6001234", "17  24  3420  7010987")
    assert first.cuenta_predial == ("51888",)
    assert first.a_cuenta_terceros is not None and first.a_cuenta_terceros.domicilio_fiscal == "01000"
    assert [p.descripcion for p in first.partes] == ["Tornillo", "Tuerca"]
    exento = cfdi.conceptos[1].traslados[0]
    assert (exento.tipo_factor, exento.tasa_o_cuota, exento.importe) == ("Exento", None, None)
    summary = {(t.tipo_factor, t.tasa_o_cuota): (t.base, t.importe) for t in cfdi.impuestos.traslados}
    assert summary[("Tasa", "0.080000")] == ("59.97", "4.80")
    assert summary[("Exento", None)] == ("250.00", None)
    traslados, retenciones = cfdi.taxes_by_rate()
    by_rate = {(t.tipo_factor, t.tasa_o_cuota): Decimal(t.importe) for t in traslados}
    assert by_rate[("Tasa", "0.160000")] == Decimal(summary[("Tasa", "0.160000")][1])
    assert {t.impuesto: t.importe for t in retenciones} == {"001": "224.00", "002": "238.93"}
    assert cfdi.pagos is None


def test_pagos(pac: Csd) -> None:
    cfdi = extract(_stamp(build_invoice(fecha=FECHA, seed=2, pagos=True, conceptos=2), pac))
    assert cfdi.comprobante.tipo_de_comprobante == "P"
    assert cfdi.pagos is not None and cfdi.pagos.version == "2.0"
    pago = cfdi.pagos.pagos[0]
    assert (pago.fecha_pago, pago.forma_de_pago, pago.moneda, pago.tipo_cambio) == (
        "2026-11-20T08:30:00", "03", "MXN", "1")
    assert len(pago.documentos) == 2
    assert sum(Decimal(d.imp_pagado) for d in pago.documentos) == Decimal(pago.monto)
    assert pago.documentos[0].traslados[0].tasa_o_cuota == "0.160000"
    assert dict(cfdi.pagos.totales)["MontoTotalPagos"] == pago.monto
    assert pago.traslados[0].impuesto == "002"


def test_finkok_demo_sample(shared_dir: Path) -> None:
    cfdi = extract((shared_dir / "cfdi/samples/cfdiutils_cfdi40-valid.xml").read_bytes())
    assert cfdi.uuid == "6F35D3B5-3651-5370-BC2C-14CDBE384CD7"
    assert (cfdi.tfd.fecha_timbrado, cfdi.tfd.no_certificado_sat, cfdi.tfd.rfc_prov_certif) == (
        "2025-02-19T08:37:30", "30001000000500003456", "CVD110412TF6")
    assert (cfdi.comprobante.subtotal, cfdi.comprobante.descuento, cfdi.comprobante.total) == (
        "3824.15", "956.04", "3327.01")
    assert cfdi.comprobante.serie is None
    assert cfdi.receptor.domicilio_fiscal == "54700"
    assert cfdi.conceptos[0].descripcion == "Portable tetris gamepad pro++ ⏻"
    assert cfdi.tfd.cadena_original.startswith(
        "||1.1|6F35D3B5-3651-5370-BC2C-14CDBE384CD7|2025-02-19T08:37:30|"
    )


def test_satcfdi_sample_with_everything(shared_dir: Path) -> None:
    cfdi = extract((shared_dir / "cfdi/samples/satcfdi_cfdv40-ejemplo-signed-tfd.xml").read_bytes())
    assert cfdi.uuid == "499e9a70-36ac-448a-bbd9-f3f52102e4be"  # lower case, as written
    assert cfdi.informacion_global is not None
    assert (cfdi.informacion_global.periodicidad, cfdi.informacion_global.meses) == ("05", "18")
    assert cfdi.relacionados[0].tipo_relacion == "09"
    assert cfdi.receptor.residencia_fiscal == "MEX"
    assert cfdi.emisor.fac_atr_adquirente == "0123456789"
    assert cfdi.comprobante.confirmacion == "A1234"
    assert cfdi.impuestos.total_retenidos == "247500"


def test_receptor_fiscal_data(pac: Csd) -> None:
    stamped = _stamp(build_invoice(fecha=FECHA, seed=3, receptor_cp="01000", receptor_regimen="612",
                                   uso_cfdi="G01", receptor_rfc="RARA760229C54"), pac)
    assert receptor_fiscal_data(stamped) == {
        "rfc": "RARA760229C54", "usoCfdi": "G01", "regimenFiscal": "612", "codigoPostal": "01000",
    }


def test_unstamped_is_a_clear_error() -> None:
    sealed = build_invoice(fecha=FECHA, seed=4)
    with pytest.raises(NotStampedError, match="not stamped"):
        extract(sealed)
    with pytest.raises(NotStampedError, match="TimbreFiscalDigital"):
        receptor_fiscal_data(sealed)
    with pytest.raises(ValueError, match="not a CFDI 4.0"):
        extract(b"<root/>")
