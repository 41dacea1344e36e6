"""Read a stamped CFDI 4.0 into plain, frozen data.

Values are the attribute strings exactly as written (leading zeros, trailing zeros and
all): ``Total="1000.00"`` stays ``"1000.00"``. Amounts also have a ``Decimal`` property
where arithmetic is handy. Nothing is looked up in SAT catalogs.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import cast

from lxml import etree

from worker.cfdi.sealing import CadenaError, comprobante_root
from worker.cfdi.tfd import find_tfd, tfd_cadena_original
from worker.cfdi.xml import CFDI_NS, PAGOS_NS

_C = f"{{{CFDI_NS}}}"
_P = f"{{{PAGOS_NS}}}"


class NotStampedError(ValueError):
    """The XML has no cfdi:Complemento/tfd:TimbreFiscalDigital: it was never stamped."""


def _dec(value: str | None) -> Decimal | None:
    return Decimal(value) if value not in (None, "") else None


@dataclass(frozen=True)
class Tfd:
    version: str
    uuid: str
    fecha_timbrado: str
    rfc_prov_certif: str
    leyenda: str | None
    sello_cfd: str
    no_certificado_sat: str
    sello_sat: str
    cadena_original: str  # the "cadena original del complemento de certificación digital del SAT"


@dataclass(frozen=True)
class Tax:
    """One Traslado or Retencion (concepto, summary, Pagos DR or P level)."""

    impuesto: str
    tipo_factor: str | None
    tasa_o_cuota: str | None
    base: str | None
    importe: str | None

    @property
    def importe_dec(self) -> Decimal:
        return _dec(self.importe) or Decimal(0)

    @property
    def base_dec(self) -> Decimal:
        return _dec(self.base) or Decimal(0)


@dataclass(frozen=True)
class ACuentaTerceros:
    rfc: str
    nombre: str
    regimen_fiscal: str
    domicilio_fiscal: str


@dataclass(frozen=True)
class Parte:
    clave_prod_serv: str
    no_identificacion: str | None
    cantidad: str
    unidad: str | None
    descripcion: str
    valor_unitario: str | None
    importe: str | None
    informacion_aduanera: tuple[str, ...]


@dataclass(frozen=True)
class Concepto:
    clave_prod_serv: str
    no_identificacion: str | None
    cantidad: str
    clave_unidad: str
    unidad: str | None
    descripcion: str
    valor_unitario: str
    importe: str
    descuento: str | None
    objeto_imp: str
    traslados: tuple[Tax, ...]
    retenciones: tuple[Tax, ...]
    a_cuenta_terceros: ACuentaTerceros | None
    informacion_aduanera: tuple[str, ...]
    cuenta_predial: tuple[str, ...]
    partes: tuple[Parte, ...]

    @property
    def importe_dec(self) -> Decimal:
        return Decimal(self.importe)


@dataclass(frozen=True)
class Emisor:
    rfc: str
    nombre: str
    regimen_fiscal: str
    fac_atr_adquirente: str | None


@dataclass(frozen=True)
class Receptor:
    rfc: str
    nombre: str
    uso_cfdi: str
    regimen_fiscal: str
    domicilio_fiscal: str  # the CP, a string: leading zeros kept
    residencia_fiscal: str | None
    num_reg_id_trib: str | None


@dataclass(frozen=True)
class Comprobante:
    version: str
    serie: str | None
    folio: str | None
    fecha: str
    tipo_de_comprobante: str
    lugar_expedicion: str
    moneda: str
    tipo_cambio: str | None
    forma_pago: str | None
    metodo_pago: str | None
    condiciones_de_pago: str | None
    exportacion: str
    subtotal: str
    descuento: str | None
    total: str
    confirmacion: str | None
    no_certificado: str
    sello: str

    @property
    def subtotal_dec(self) -> Decimal:
        return Decimal(self.subtotal)

    @property
    def descuento_dec(self) -> Decimal:
        return _dec(self.descuento) or Decimal(0)

    @property
    def total_dec(self) -> Decimal:
        return Decimal(self.total)


@dataclass(frozen=True)
class Impuestos:
    """The comprobante-level summary, as written (``present`` False when there is none)."""

    present: bool
    total_trasladados: str | None
    total_retenidos: str | None
    traslados: tuple[Tax, ...]  # grouped by impuesto, TipoFactor and TasaOCuota
    retenciones: tuple[Tax, ...]  # grouped by impuesto


@dataclass(frozen=True)
class CfdiRelacionados:
    tipo_relacion: str
    uuids: tuple[str, ...]


@dataclass(frozen=True)
class InformacionGlobal:
    periodicidad: str
    meses: str
    anio: str


@dataclass(frozen=True)
class DoctoRelacionado:
    id_documento: str
    serie: str | None
    folio: str | None
    moneda: str
    equivalencia: str | None
    num_parcialidad: str
    imp_saldo_ant: str
    imp_pagado: str
    imp_saldo_insoluto: str
    objeto_imp: str
    traslados: tuple[Tax, ...]
    retenciones: tuple[Tax, ...]


@dataclass(frozen=True)
class Pago:
    fecha_pago: str
    forma_de_pago: str
    moneda: str
    tipo_cambio: str | None
    monto: str
    num_operacion: str | None
    cuentas: tuple[tuple[str, str], ...]  # RfcEmisorCtaOrd, CtaOrdenante, ... as (name, value)
    documentos: tuple[DoctoRelacionado, ...]
    traslados: tuple[Tax, ...]
    retenciones: tuple[Tax, ...]


@dataclass(frozen=True)
class Pagos:
    version: str
    totales: tuple[tuple[str, str], ...]  # (attribute, value) in document order
    pagos: tuple[Pago, ...]


@dataclass(frozen=True)
class StampedCfdi:
    tfd: Tfd
    comprobante: Comprobante
    emisor: Emisor
    receptor: Receptor
    conceptos: tuple[Concepto, ...]
    impuestos: Impuestos
    relacionados: tuple[CfdiRelacionados, ...]
    informacion_global: InformacionGlobal | None
    pagos: Pagos | None

    @property
    def uuid(self) -> str:
        return self.tfd.uuid

    def taxes_by_rate(self) -> tuple[tuple[Tax, ...], tuple[Tax, ...]]:
        """(traslados, retenciones) summed over the conceptos by impuesto, TipoFactor and TasaOCuota."""
        out: list[tuple[Tax, ...]] = []
        for kind in ("traslados", "retenciones"):
            sums: dict[tuple[str, str | None, str | None], list[Decimal]] = {}
            for c in self.conceptos:
                for t in getattr(c, kind):
                    acc = sums.setdefault(
                        (t.impuesto, t.tipo_factor, t.tasa_o_cuota), [Decimal(0), Decimal(0)]
                    )
                    acc[0] += t.base_dec
                    acc[1] += t.importe_dec
            out.append(tuple(Tax(k[0], k[1], k[2], str(v[0]), str(v[1])) for k, v in sums.items()))
        return out[0], out[1]


def _taxes(parent: etree._Element | None, path: str, suffix: str = "") -> tuple[Tax, ...]:
    if parent is None:
        return ()
    return tuple(
        Tax(
            impuesto=el.get("Impuesto" + suffix, ""),
            tipo_factor=el.get("TipoFactor" + suffix),
            tasa_o_cuota=el.get("TasaOCuota" + suffix),
            base=el.get("Base" + suffix),
            importe=el.get("Importe" + suffix),
        )
        for el in parent.iterfind(path)
    )


def _concepto(el: etree._Element) -> Concepto:
    imp = el.find(f"{_C}Impuestos")
    terceros = el.find(f"{_C}ACuentaTerceros")
    return Concepto(
        clave_prod_serv=el.get("ClaveProdServ", ""),
        no_identificacion=el.get("NoIdentificacion"),
        cantidad=el.get("Cantidad", ""),
        clave_unidad=el.get("ClaveUnidad", ""),
        unidad=el.get("Unidad"),
        descripcion=el.get("Descripcion", ""),
        valor_unitario=el.get("ValorUnitario", ""),
        importe=el.get("Importe", ""),
        descuento=el.get("Descuento"),
        objeto_imp=el.get("ObjetoImp", ""),
        traslados=_taxes(imp, f"{_C}Traslados/{_C}Traslado"),
        retenciones=_taxes(imp, f"{_C}Retenciones/{_C}Retencion"),
        a_cuenta_terceros=None if terceros is None else ACuentaTerceros(
            terceros.get("RfcACuentaTerceros", ""), terceros.get("NombreACuentaTerceros", ""),
            terceros.get("RegimenFiscalACuentaTerceros", ""),
            terceros.get("DomicilioFiscalACuentaTerceros", ""),
        ),
        informacion_aduanera=tuple(
            ia.get("NumeroPedimento", "") for ia in el.iterfind(f"{_C}InformacionAduanera")
        ),
        cuenta_predial=tuple(cp.get("Numero", "") for cp in el.iterfind(f"{_C}CuentaPredial")),
        partes=tuple(
            Parte(
                clave_prod_serv=p.get("ClaveProdServ", ""), no_identificacion=p.get("NoIdentificacion"),
                cantidad=p.get("Cantidad", ""), unidad=p.get("Unidad"), descripcion=p.get("Descripcion", ""),
                valor_unitario=p.get("ValorUnitario"), importe=p.get("Importe"),
                informacion_aduanera=tuple(
                    ia.get("NumeroPedimento", "") for ia in p.iterfind(f"{_C}InformacionAduanera")
                ),
            )
            for p in el.iterfind(f"{_C}Parte")
        ),
    )


_CUENTAS = ("RfcEmisorCtaOrd", "NomBancoOrdExt", "CtaOrdenante", "RfcEmisorCtaBen", "CtaBeneficiario",
            "TipoCadPago", "CertPago", "CadPago", "SelloPago")


def _pagos(root: etree._Element) -> Pagos | None:
    node = root.find(f"{_C}Complemento/{_P}Pagos")
    if node is None:
        return None
    totales = node.find(f"{_P}Totales")
    pagos = []
    for p in node.iterfind(f"{_P}Pago"):
        docs = []
        for d in p.iterfind(f"{_P}DoctoRelacionado"):
            imp = d.find(f"{_P}ImpuestosDR")
            docs.append(DoctoRelacionado(
                id_documento=d.get("IdDocumento", ""), serie=d.get("Serie"), folio=d.get("Folio"),
                moneda=d.get("MonedaDR", ""), equivalencia=d.get("EquivalenciaDR"),
                num_parcialidad=d.get("NumParcialidad", ""), imp_saldo_ant=d.get("ImpSaldoAnt", ""),
                imp_pagado=d.get("ImpPagado", ""), imp_saldo_insoluto=d.get("ImpSaldoInsoluto", ""),
                objeto_imp=d.get("ObjetoImpDR", ""),
                traslados=_taxes(imp, f"{_P}TrasladosDR/{_P}TrasladoDR", "DR"),
                retenciones=_taxes(imp, f"{_P}RetencionesDR/{_P}RetencionDR", "DR"),
            ))
        imp_p = p.find(f"{_P}ImpuestosP")
        pagos.append(Pago(
            fecha_pago=p.get("FechaPago", ""), forma_de_pago=p.get("FormaDePagoP", ""),
            moneda=p.get("MonedaP", ""), tipo_cambio=p.get("TipoCambioP"), monto=p.get("Monto", ""),
            num_operacion=p.get("NumOperacion"),
            cuentas=tuple((name, p.get(name, "")) for name in _CUENTAS if p.get(name) is not None),
            documentos=tuple(docs),
            traslados=_taxes(imp_p, f"{_P}TrasladosP/{_P}TrasladoP", "P"),
            retenciones=_taxes(imp_p, f"{_P}RetencionesP/{_P}RetencionP", "P"),
        ))
    return Pagos(
        version=node.get("Version", ""),
        # lxml's attribute items are str here; its stubs allow bytes too
        totales=cast("tuple[tuple[str, str], ...]", tuple(totales.items())) if totales is not None else (),
        pagos=tuple(pagos),
    )


def _tfd(root: etree._Element) -> Tfd:
    el = find_tfd(root)
    if el is None:
        raise NotStampedError(
            "the CFDI has no TimbreFiscalDigital (it is sealed but not stamped by a PAC)"
        )
    return Tfd(
        version=el.get("Version", ""), uuid=el.get("UUID", ""), fecha_timbrado=el.get("FechaTimbrado", ""),
        rfc_prov_certif=el.get("RfcProvCertif", ""), leyenda=el.get("Leyenda"),
        sello_cfd=el.get("SelloCFD", ""), no_certificado_sat=el.get("NoCertificadoSAT", ""),
        sello_sat=el.get("SelloSAT", ""), cadena_original=tfd_cadena_original(el),
    )


def _root(xml: bytes | etree._Element) -> etree._Element:
    try:
        return comprobante_root(xml)
    except CadenaError as exc:
        raise ValueError(str(exc)) from None


def extract(stamped_xml: bytes | etree._Element) -> StampedCfdi:
    """Everything a stamped CFDI 4.0 says; :class:`NotStampedError` if it has no TFD."""
    root = _root(stamped_xml)
    tfd = _tfd(root)
    emisor = root.find(f"{_C}Emisor")
    receptor = root.find(f"{_C}Receptor")
    if emisor is None or receptor is None:
        raise ValueError("the CFDI lacks cfdi:Emisor or cfdi:Receptor")
    imp = root.find(f"{_C}Impuestos")
    glob = root.find(f"{_C}InformacionGlobal")
    g = root.get
    return StampedCfdi(
        tfd=tfd,
        comprobante=Comprobante(
            version=g("Version", ""), serie=g("Serie"), folio=g("Folio"), fecha=g("Fecha", ""),
            tipo_de_comprobante=g("TipoDeComprobante", ""), lugar_expedicion=g("LugarExpedicion", ""),
            moneda=g("Moneda", ""), tipo_cambio=g("TipoCambio"), forma_pago=g("FormaPago"),
            metodo_pago=g("MetodoPago"), condiciones_de_pago=g("CondicionesDePago"),
            exportacion=g("Exportacion", ""), subtotal=g("SubTotal", ""), descuento=g("Descuento"),
            total=g("Total", ""), confirmacion=g("Confirmacion"), no_certificado=g("NoCertificado", ""),
            sello=g("Sello", ""),
        ),
        emisor=Emisor(
            rfc=emisor.get("Rfc", ""), nombre=emisor.get("Nombre", ""),
            regimen_fiscal=emisor.get("RegimenFiscal", ""), fac_atr_adquirente=emisor.get("FacAtrAdquirente"),
        ),
        receptor=Receptor(
            rfc=receptor.get("Rfc", ""), nombre=receptor.get("Nombre", ""),
            uso_cfdi=receptor.get("UsoCFDI", ""),
            regimen_fiscal=receptor.get("RegimenFiscalReceptor", ""),
            domicilio_fiscal=receptor.get("DomicilioFiscalReceptor", ""),
            residencia_fiscal=receptor.get("ResidenciaFiscal"), num_reg_id_trib=receptor.get("NumRegIdTrib"),
        ),
        conceptos=tuple(_concepto(c) for c in root.iterfind(f"{_C}Conceptos/{_C}Concepto")),
        impuestos=Impuestos(
            present=imp is not None,
            total_trasladados=None if imp is None else imp.get("TotalImpuestosTrasladados"),
            total_retenidos=None if imp is None else imp.get("TotalImpuestosRetenidos"),
            traslados=_taxes(imp, f"{_C}Traslados/{_C}Traslado"),
            retenciones=_taxes(imp, f"{_C}Retenciones/{_C}Retencion"),
        ),
        relacionados=tuple(
            CfdiRelacionados(rel.get("TipoRelacion", ""),
                             tuple(r.get("UUID", "") for r in rel.iterfind(f"{_C}CfdiRelacionado")))
            for rel in root.iterfind(f"{_C}CfdiRelacionados")
        ),
        informacion_global=None if glob is None else InformacionGlobal(
            glob.get("Periodicidad", ""), glob.get("Meses", ""), glob.get("Año", "")
        ),
        pagos=_pagos(root),
    )


def receptor_fiscal_data(stamped_xml: bytes | etree._Element) -> dict[str, str]:
    """SIF's ``datosFiscales``: the stamped CFDI's Receptor, as written."""
    root = _root(stamped_xml)
    _tfd(root)
    receptor = root.find(f"{_C}Receptor")
    if receptor is None:
        raise ValueError("the CFDI has no cfdi:Receptor")
    return {  # the same as fiscal_data_of(extract(...).receptor)
        "rfc": receptor.get("Rfc", ""),
        "usoCfdi": receptor.get("UsoCFDI", ""),
        "regimenFiscal": receptor.get("RegimenFiscalReceptor", ""),
        "codigoPostal": receptor.get("DomicilioFiscalReceptor", ""),
    }


def fiscal_data_of(receptor: Receptor) -> dict[str, str]:
    """SIF's ``datosFiscales`` from an already extracted Receptor (``receptor_fiscal_data``
    without parsing the XML again)."""
    return {
        "rfc": receptor.rfc,
        "usoCfdi": receptor.uso_cfdi,
        "regimenFiscal": receptor.regimen_fiscal,
        "codigoPostal": receptor.domicilio_fiscal,
    }
