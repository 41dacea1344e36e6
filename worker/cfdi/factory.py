"""Fresh, sealed CFDI 4.0 invoices for the demo, the tests and the benchmarks.

Finkok (and our sandbox) refuse a ``Fecha`` older than 72 hours, so fixtures cannot be
files: they are made here, sealed with our own test CSD (:mod:`worker.cfdi.csd`). The
amounts add up the way a PAC checks them: Importe = Cantidad x ValorUnitario, IVA per
concepto on Importe - Descuento, the Impuestos summary grouped by impuesto, TipoFactor
and TasaOCuota, and Total = SubTotal - Descuento + traslados - retenciones.

Given ``seed`` (and ``fecha``) the bytes are reproducible; without a seed every call gets
a different folio, so two invoices made in the same second never look like a re-send.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid as uuid_mod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from lxml import etree

from worker.cfdi.csd import Csd, default_emisor_csd
from worker.cfdi.sealing import seal
from worker.cfdi.xml import CFDI_NS, PAGOS_NS, XSI_NS

MEXICO_CITY = ZoneInfo("America/Mexico_City")
CFDI_SCHEMA_LOCATION = "http://www.sat.gob.mx/cfd/4 http://www.sat.gob.mx/sitio_internet/cfd/4/cfdv40.xsd"
PAGOS_SCHEMA_LOCATION = "http://www.sat.gob.mx/Pagos20 http://www.sat.gob.mx/sitio_internet/cfd/Pagos/Pagos20.xsd"
CENT = Decimal("0.01")
EXENTO = "Exento"
# A PAC refuses a Fecha in its future; stay clear of small clock differences.
CLOCK_MARGIN = dt.timedelta(minutes=1)

# (ClaveProdServ, ClaveUnidad, Unidad, Descripcion): valid keys of SAT's catalogs.
_CATALOG = [
    ("43211503", "H87", "Pieza", "Computadora portátil"),
    ("43211507", "H87", "Pieza", "Computadora de escritorio"),
    ("43211914", "H87", "Pieza", "Pantalla LED 24\""),
    ("52161557", "H87", "Pieza", "Control de videojuego"),
    ("44121618", "XBX", "Caja", "Tijeras de oficina"),
    ("50202306", "LTR", "Litro", "Bebida refrescante"),
    ("56101500", "H87", "Pieza", "Silla ergonómica"),
    ("78121603", "E48", "Servicio", "Servicio de envío de mercancías"),
    ("81111500", "HUR", "Hora", "Ingeniería de software"),
    ("81112101", "E48", "Servicio", "Hospedaje de aplicaciones"),
    ("80111600", "HUR", "Hora", "Servicios de personal temporal"),
    ("90111800", "E48", "Servicio", "Hospedaje en hotel"),
]


def _dec(value: Decimal | str | int | float) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _money(value: Decimal) -> str:
    return f"{value.quantize(CENT, ROUND_HALF_UP):.2f}"


def _tasa(value: Decimal | str) -> str:
    return f"{_dec(value):.6f}"


def _plain(value: Decimal) -> str:
    """A quantity without exponent or trailing zeros ("2", "1.5")."""
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


@dataclass(frozen=True)
class ACuentaTerceros:
    rfc: str
    nombre: str
    regimen_fiscal: str
    domicilio_fiscal: str


@dataclass(frozen=True)
class Parte:
    clave_prod_serv: str
    cantidad: Decimal | str | int
    descripcion: str
    unidad: str | None = None
    no_identificacion: str | None = None
    valor_unitario: Decimal | str | None = None


@dataclass(frozen=True)
class Concepto:
    """One line. ``tasa_iva`` is an IVA rate ("0.16", "0.08", "0"), ``"Exento"``, or None."""

    descripcion: str
    cantidad: Decimal | str | int = 1
    valor_unitario: Decimal | str = "100.00"
    clave_prod_serv: str = "01010101"
    clave_unidad: str = "H87"
    unidad: str | None = "Pieza"
    no_identificacion: str | None = None
    descuento: Decimal | str | None = None
    objeto_imp: str = "02"
    tasa_iva: Decimal | str | None = "0.16"
    retenciones: tuple[tuple[str, Decimal | str], ...] = ()  # (impuesto "001"/"002", tasa)
    informacion_aduanera: tuple[str, ...] = ()
    cuenta_predial: str | None = None
    a_cuenta_terceros: ACuentaTerceros | None = None
    partes: tuple[Parte, ...] = field(default=())


@dataclass
class _Line:
    """A concepto with its computed amounts."""

    spec: Concepto
    importe: Decimal
    descuento: Decimal
    base: Decimal
    traslado: tuple[str, str, Decimal] | None  # (tipo factor, tasa text, importe)
    retenciones: list[tuple[str, str, Decimal]]  # (impuesto, tasa text, importe)


def _compute(spec: Concepto) -> _Line:
    cantidad, unit = _dec(spec.cantidad), _dec(spec.valor_unitario)
    importe = (cantidad * unit).quantize(CENT, ROUND_HALF_UP)
    descuento = _dec(spec.descuento).quantize(CENT, ROUND_HALF_UP) if spec.descuento else Decimal(0)
    if descuento > importe:
        raise ValueError(f"Descuento {descuento} exceeds Importe {importe} in {spec.descripcion!r}")
    base = importe - descuento
    traslado = None
    retenciones: list[tuple[str, str, Decimal]] = []
    if spec.objeto_imp == "02":
        if spec.tasa_iva is None and not spec.retenciones:
            raise ValueError("ObjetoImp 02 needs tasa_iva or retenciones")
        if spec.tasa_iva == EXENTO:
            traslado = (EXENTO, "", Decimal(0))
        elif spec.tasa_iva is not None:
            rate = _dec(spec.tasa_iva)
            traslado = ("Tasa", _tasa(rate), (base * rate).quantize(CENT, ROUND_HALF_UP))
        for impuesto, tasa in spec.retenciones:
            rate = _dec(tasa)
            retenciones.append((impuesto, _tasa(rate), (base * rate).quantize(CENT, ROUND_HALF_UP)))
    return _Line(spec, importe, descuento, base, traslado, retenciones)


def _c(name: str) -> str:
    return f"{{{CFDI_NS}}}{name}"


def _p(name: str) -> str:
    return f"{{{PAGOS_NS}}}{name}"


def _sub(parent: etree._Element, tag: str, attrs: Iterable[tuple[str, str | None]]) -> etree._Element:
    """A child with attributes in the given order, skipping the None ones."""
    el = etree.SubElement(parent, tag)
    for name, value in attrs:
        if value is not None:
            el.set(name, value)
    return el


def _check_text(**values: str | None) -> None:
    for name, value in values.items():
        if value is not None and ("|" in value or not value.strip()):
            raise ValueError(f"{name} must be non-blank and must not contain '|': {value!r}")


def _generated(count: int, rng: random.Random, descripcion: str | None) -> list[Concepto]:
    lines = []
    for i in range(count):
        clave, unidad_key, unidad, text = _CATALOG[rng.randrange(len(_CATALOG))]
        lines.append(
            Concepto(
                descripcion=f"{descripcion} {i + 1}" if descripcion else f"{text} #{i + 1}",
                cantidad=rng.randint(1, 5),
                valor_unitario=Decimal(rng.randint(1000, 250000)) / 100,
                clave_prod_serv=clave,
                clave_unidad=unidad_key,
                unidad=unidad,
                no_identificacion=f"SKU-{rng.randint(1000, 99999)}",
            )
        )
    return lines


def _conceptos(
    conceptos: int | Sequence[Concepto | Mapping[str, Any]], rng: random.Random, descripcion: str | None
) -> list[Concepto]:
    if isinstance(conceptos, int):
        if conceptos < 1:
            raise ValueError("a CFDI needs at least one concepto")
        return _generated(conceptos, rng, descripcion)
    specs = [c if isinstance(c, Concepto) else Concepto(**c) for c in conceptos]
    if not specs:
        raise ValueError("a CFDI needs at least one concepto")
    return specs


def mexico_city_now() -> dt.datetime:
    """Naive local time in Mexico City (CFDI dates carry no offset)."""
    return dt.datetime.now(MEXICO_CITY).replace(tzinfo=None, microsecond=0)


def build_invoice(
    *,
    emisor: Csd | None = None,
    emisor_regimen: str = "601",
    lugar_expedicion: str = "06000",
    receptor_rfc: str = "URE180429TM6",
    receptor_nombre: str = "UNIVERSIDAD ROBOTICA ESPAÑOLA",
    receptor_cp: str = "86991",
    receptor_regimen: str | None = None,
    uso_cfdi: str | None = None,
    conceptos: int | Sequence[Concepto | Mapping[str, Any]] = 1,
    descripcion: str | None = None,
    fecha: dt.datetime | None = None,
    serie: str | None = "RB",
    folio: str | None = None,
    moneda: str = "MXN",
    tipo_cambio: str | None = None,
    forma_pago: str = "03",
    metodo_pago: str = "PUE",
    condiciones_de_pago: str | None = None,
    exportacion: str = "01",
    relacionados: Sequence[str] = (),
    tipo_relacion: str = "04",
    informacion_global: tuple[str, str, str] | None = None,
    pagos: bool = False,
    seed: int | None = None,
) -> bytes:
    """A sealed CFDI 4.0 (tipo I, or tipo P with Pagos 2.0 when ``pagos``) as UTF-8 bytes.

    ``conceptos`` is a count of generated lines or a list of :class:`Concepto` (or dicts
    of its fields). With ``pagos`` they describe the invoices being paid, one
    DoctoRelacionado each. ``descripcion`` names generated lines (any Unicode but ``|``).
    ``fecha`` defaults to a minute ago, Mexico City time. ``informacion_global`` is
    (Periodicidad, Meses, Año).
    """
    rng = random.Random(seed)
    csd = emisor or default_emisor_csd()
    fecha = fecha or (mexico_city_now() - CLOCK_MARGIN)
    # Defaults a PAC accepts for the receptor (worker.cfdi.preflight): the generic RFCs
    # take 616/S01, a persona moral 601/G03, a persona física 612/G03.
    generic = receptor_rfc in ("XAXX010101000", "XEXX010101000")
    if receptor_regimen is None:
        receptor_regimen = "616" if generic else "601" if len(receptor_rfc) == 12 else "612"
    if uso_cfdi is None:
        uso_cfdi = "S01" if generic else "G03"
    folio = folio if folio is not None else str(rng.getrandbits(40))
    _check_text(receptor_nombre=receptor_nombre, descripcion=descripcion, serie=serie, folio=folio,
                condiciones_de_pago=condiciones_de_pago)
    if moneda != "MXN" and tipo_cambio is None and not pagos:
        raise ValueError(f"Moneda {moneda} needs tipo_cambio")
    specs = _conceptos(conceptos, rng, descripcion)
    for spec in specs:
        _check_text(
            descripcion=spec.descripcion, unidad=spec.unidad, no_identificacion=spec.no_identificacion
        )
    lines = [_compute(spec) for spec in specs]

    nsmap = {"cfdi": CFDI_NS, "xsi": XSI_NS}
    location = CFDI_SCHEMA_LOCATION
    if pagos:
        nsmap["pago20"] = PAGOS_NS
        location += " " + PAGOS_SCHEMA_LOCATION
    root = etree.Element(_c("Comprobante"), nsmap=nsmap)
    root.set(f"{{{XSI_NS}}}schemaLocation", location)
    for name, value in (("Version", "4.0"), ("Serie", serie), ("Folio", folio),
                        ("Fecha", fecha.strftime("%Y-%m-%dT%H:%M:%S"))):
        if value is not None:
            root.set(name, value)

    if pagos:
        _comprobante_pago(root, lugar_expedicion, exportacion)
    else:
        _comprobante_ingreso(root, lines, forma_pago=forma_pago, metodo_pago=metodo_pago,
                             condiciones=condiciones_de_pago, moneda=moneda, tipo_cambio=tipo_cambio,
                             exportacion=exportacion, lugar=lugar_expedicion)

    if informacion_global is not None:
        periodicidad, meses, anio = informacion_global
        _sub(root, _c("InformacionGlobal"), [("Periodicidad", periodicidad), ("Meses", meses), ("Año", anio)])
    if relacionados:
        rel = _sub(root, _c("CfdiRelacionados"), [("TipoRelacion", tipo_relacion)])
        for uid in relacionados:
            _sub(rel, _c("CfdiRelacionado"), [("UUID", str(uid).upper())])
    _sub(root, _c("Emisor"), [("Rfc", csd.rfc), ("Nombre", csd.name), ("RegimenFiscal", emisor_regimen)])
    _sub(root, _c("Receptor"), [
        ("Rfc", receptor_rfc), ("Nombre", receptor_nombre), ("DomicilioFiscalReceptor", receptor_cp),
        ("RegimenFiscalReceptor", receptor_regimen), ("UsoCFDI", "CP01" if pagos else uso_cfdi),
    ])
    if pagos:
        _conceptos_pago(root)
        _pagos_complement(root, lines, fecha, rng)
    else:
        _conceptos_ingreso(root, lines)
        _impuestos(root, lines)
    etree.indent(root, space="  ")
    return seal(root, csd)


def _comprobante_ingreso(
    root: etree._Element, lines: list[_Line], *, forma_pago: str, metodo_pago: str,
    condiciones: str | None, moneda: str, tipo_cambio: str | None, exportacion: str, lugar: str,
) -> None:
    subtotal = sum((ln.importe for ln in lines), Decimal(0))
    descuento = sum((ln.descuento for ln in lines), Decimal(0))
    trasladados = sum((ln.traslado[2] for ln in lines if ln.traslado), Decimal(0))
    retenidos = sum((r[2] for ln in lines for r in ln.retenciones), Decimal(0))
    total = subtotal - descuento + trasladados - retenidos
    has_descuento = any(ln.spec.descuento for ln in lines)
    for name, value in (
        ("FormaPago", forma_pago), ("NoCertificado", ""), ("Certificado", ""),
        ("CondicionesDePago", condiciones), ("SubTotal", _money(subtotal)),
        ("Descuento", _money(descuento) if has_descuento else None), ("Moneda", moneda),
        ("TipoCambio", tipo_cambio if moneda != "MXN" else None), ("Total", _money(total)),
        ("TipoDeComprobante", "I"), ("Exportacion", exportacion), ("MetodoPago", metodo_pago),
        ("LugarExpedicion", lugar), ("Sello", ""),
    ):
        if value is not None:
            root.set(name, value)


def _comprobante_pago(root: etree._Element, lugar: str, exportacion: str) -> None:
    for name, value in (
        ("NoCertificado", ""), ("Certificado", ""), ("SubTotal", "0"), ("Moneda", "XXX"), ("Total", "0"),
        ("TipoDeComprobante", "P"), ("Exportacion", exportacion), ("LugarExpedicion", lugar), ("Sello", ""),
    ):
        root.set(name, value)


def _conceptos_ingreso(root: etree._Element, lines: list[_Line]) -> None:
    conceptos = etree.SubElement(root, _c("Conceptos"))
    for ln in lines:
        s = ln.spec
        el = _sub(conceptos, _c("Concepto"), [
            ("ClaveProdServ", s.clave_prod_serv), ("NoIdentificacion", s.no_identificacion),
            ("Cantidad", _plain(_dec(s.cantidad))), ("ClaveUnidad", s.clave_unidad), ("Unidad", s.unidad),
            ("Descripcion", s.descripcion), ("ValorUnitario", _money(_dec(s.valor_unitario))),
            ("Importe", _money(ln.importe)), ("Descuento", _money(ln.descuento) if s.descuento else None),
            ("ObjetoImp", s.objeto_imp),
        ])
        if ln.traslado or ln.retenciones:
            imp = etree.SubElement(el, _c("Impuestos"))
            if ln.traslado:
                factor, tasa, importe = ln.traslado
                exento = factor == EXENTO
                _sub(etree.SubElement(imp, _c("Traslados")), _c("Traslado"), [
                    ("Base", _money(ln.base)), ("Impuesto", "002"), ("TipoFactor", factor),
                    ("TasaOCuota", None if exento else tasa),
                    ("Importe", None if exento else _money(importe)),
                ])
            if ln.retenciones:
                rets = etree.SubElement(imp, _c("Retenciones"))
                for impuesto, tasa, importe in ln.retenciones:
                    _sub(rets, _c("Retencion"), [
                        ("Base", _money(ln.base)), ("Impuesto", impuesto), ("TipoFactor", "Tasa"),
                        ("TasaOCuota", tasa), ("Importe", _money(importe)),
                    ])
        if s.a_cuenta_terceros:
            t = s.a_cuenta_terceros
            _sub(el, _c("ACuentaTerceros"), [
                ("RfcACuentaTerceros", t.rfc), ("NombreACuentaTerceros", t.nombre),
                ("RegimenFiscalACuentaTerceros", t.regimen_fiscal),
                ("DomicilioFiscalACuentaTerceros", t.domicilio_fiscal),
            ])
        for pedimento in s.informacion_aduanera:
            _sub(el, _c("InformacionAduanera"), [("NumeroPedimento", pedimento)])
        if s.cuenta_predial:
            _sub(el, _c("CuentaPredial"), [("Numero", s.cuenta_predial)])
        for parte in s.partes:
            _sub(el, _c("Parte"), [
                ("ClaveProdServ", parte.clave_prod_serv), ("NoIdentificacion", parte.no_identificacion),
                ("Cantidad", _plain(_dec(parte.cantidad))), ("Unidad", parte.unidad),
                ("Descripcion", parte.descripcion),
                ("ValorUnitario", _money(_dec(parte.valor_unitario)) if parte.valor_unitario else None),
                ("Importe", _money(_dec(parte.cantidad) * _dec(parte.valor_unitario))
                 if parte.valor_unitario else None),
            ])


def tax_summary(lines: list[_Line]) -> tuple[dict[tuple[str, str], list[Decimal]], dict[str, Decimal]]:
    """Traslados by (TipoFactor, TasaOCuota) -> [Base, Importe]; retenciones by impuesto."""
    traslados: dict[tuple[str, str], list[Decimal]] = {}
    retenciones: dict[str, Decimal] = {}
    for ln in lines:
        if ln.traslado:
            factor, tasa, importe = ln.traslado
            acc = traslados.setdefault((factor, tasa), [Decimal(0), Decimal(0)])
            acc[0] += ln.base
            acc[1] += importe
        for impuesto, _tasa_text, importe in ln.retenciones:
            retenciones[impuesto] = retenciones.get(impuesto, Decimal(0)) + importe
    return traslados, retenciones


def _impuestos(root: etree._Element, lines: list[_Line]) -> None:
    traslados, retenciones = tax_summary(lines)
    if not traslados and not retenciones:
        return
    imp = etree.SubElement(root, _c("Impuestos"))
    if retenciones:
        imp.set("TotalImpuestosRetenidos", _money(sum(retenciones.values(), Decimal(0))))
    taxed = [v for (factor, _t), v in traslados.items() if factor != EXENTO]
    if taxed:
        imp.set("TotalImpuestosTrasladados", _money(sum((v[1] for v in taxed), Decimal(0))))
    if retenciones:
        rets = etree.SubElement(imp, _c("Retenciones"))
        for impuesto in sorted(retenciones):
            _sub(rets, _c("Retencion"), [("Impuesto", impuesto), ("Importe", _money(retenciones[impuesto]))])
    if traslados:
        trs = etree.SubElement(imp, _c("Traslados"))
        highest_first = sorted(traslados.items(), key=lambda kv: kv[0][1], reverse=True)
        for (factor, tasa), (base, importe) in highest_first:
            exento = factor == EXENTO
            _sub(trs, _c("Traslado"), [
                ("Base", _money(base)), ("Impuesto", "002"), ("TipoFactor", factor),
                ("TasaOCuota", None if exento else tasa), ("Importe", None if exento else _money(importe)),
            ])


def _conceptos_pago(root: etree._Element) -> None:
    conceptos = etree.SubElement(root, _c("Conceptos"))
    _sub(conceptos, _c("Concepto"), [
        ("ClaveProdServ", "84111506"), ("Cantidad", "1"), ("ClaveUnidad", "ACT"), ("Descripcion", "Pago"),
        ("ValorUnitario", "0"), ("Importe", "0"), ("ObjetoImp", "01"),
    ])


_IVA_TOTALES = {"0.160000": "IVA16", "0.080000": "IVA8", "0.000000": "IVA0"}


def _pagos_complement(
    root: etree._Element, lines: list[_Line], fecha: dt.datetime, rng: random.Random
) -> None:
    """One Pago in MXN settling one DoctoRelacionado per line, in a single instalment."""
    if any(ln.retenciones for ln in lines):
        raise ValueError("build_invoice(pagos=True) supports traslados only")
    comp = etree.SubElement(root, _c("Complemento"))
    pagos = _sub(comp, _p("Pagos"), [("Version", "2.0")])
    totales = etree.SubElement(pagos, _p("Totales"))
    monto = sum((ln.base + (ln.traslado[2] if ln.traslado else 0) for ln in lines), Decimal(0))
    pago = _sub(pagos, _p("Pago"), [
        ("FechaPago", fecha.strftime("%Y-%m-%dT%H:%M:%S")), ("FormaDePagoP", "03"), ("MonedaP", "MXN"),
        ("TipoCambioP", "1"), ("Monto", _money(monto)),
    ])
    by_rate: dict[tuple[str, str], list[Decimal]] = {}
    for i, ln in enumerate(lines):
        total = ln.base + (ln.traslado[2] if ln.traslado else 0)
        dr = _sub(pago, _p("DoctoRelacionado"), [
            ("IdDocumento", str(uuid_mod.UUID(int=rng.getrandbits(128), version=4)).upper()),
            ("Serie", "RB"), ("Folio", str(1000 + i)), ("MonedaDR", "MXN"), ("EquivalenciaDR", "1"),
            ("NumParcialidad", "1"), ("ImpSaldoAnt", _money(total)), ("ImpPagado", _money(total)),
            ("ImpSaldoInsoluto", "0.00"), ("ObjetoImpDR", "02" if ln.traslado else "01"),
        ])
        if ln.traslado:
            factor, tasa, importe = ln.traslado
            exento = factor == EXENTO
            tr = etree.SubElement(etree.SubElement(dr, _p("ImpuestosDR")), _p("TrasladosDR"))
            _sub(tr, _p("TrasladoDR"), [
                ("BaseDR", _money(ln.base)), ("ImpuestoDR", "002"), ("TipoFactorDR", factor),
                ("TasaOCuotaDR", None if exento else tasa),
                ("ImporteDR", None if exento else _money(importe)),
            ])
            acc = by_rate.setdefault((factor, tasa), [Decimal(0), Decimal(0)])
            acc[0] += ln.base
            acc[1] += importe
    if by_rate:
        tps = etree.SubElement(etree.SubElement(pago, _p("ImpuestosP")), _p("TrasladosP"))
        for (factor, tasa), (base, importe) in sorted(by_rate.items(), key=lambda kv: kv[0][1], reverse=True):
            exento = factor == EXENTO
            _sub(tps, _p("TrasladoP"), [
                ("BaseP", _money(base)), ("ImpuestoP", "002"), ("TipoFactorP", factor),
                ("TasaOCuotaP", None if exento else tasa), ("ImporteP", None if exento else _money(importe)),
            ])
            if exento:
                totales.set("TotalTrasladosBaseIVAExento", _money(base))
            elif tasa in _IVA_TOTALES:
                key = _IVA_TOTALES[tasa]
                totales.set(f"TotalTrasladosBase{key}", _money(base))
                totales.set(f"TotalTrasladosImpuesto{key}", _money(importe))
    totales.set("MontoTotalPagos", _money(monto))
