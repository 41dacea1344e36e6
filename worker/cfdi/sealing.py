"""CFDI 4.0 cadena original, Sello and its verification.

The cadena original is written here in Python from SAT's rules (Anexo 20) rather than run
through SAT's XSLT, so sealing needs nothing from SAT's site at run time. The rules:

* ``||`` at both ends, ``|`` before every value, values in the fixed order of Anexo 20
  (the XSD's attribute order), node after node in document order;
* a required attribute always gives a ``|`` (empty if absent); an optional one only
  when present (present-but-empty still gives ``|``);
* every value goes through XPath ``normalize-space``: runs of space, tab, CR and LF
  become one space, and leading/trailing ones go (other Unicode spaces stay).

Covered: Comprobante, InformacionGlobal, CfdiRelacionados, Emisor, Receptor, Conceptos
(Impuestos, ACuentaTerceros, InformacionAduanera, CuentaPredial, Parte), Impuestos and
the Pagos 2.0 complement. Other SAT complements raise :class:`UnsupportedNodeError`;
elements SAT's transform has no rule for (the TimbreFiscalDigital, a private complement)
contribute their text content, as XSLT's built-in rules do. ``tests/cfdi/
test_cadena_conformance.py`` proves the result equal to SAT's XSLT.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from typing import cast

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from lxml import etree

from worker.cfdi.csd import Csd, CsdError, no_certificado, rfc_of
from worker.cfdi.xml import CFDI_NS, PAGOS_NS, TFD_NS, parse

_WS = re.compile(r"[ \t\r\n]+")

# SAT complements whose cadena rules (in SAT's cadenaoriginal_4_0 includes) we have not
# written. Meeting one is an error rather than a silently wrong Sello.
UNSUPPORTED_COMPLEMENT_NS = frozenset(
    "http://www.sat.gob.mx/" + name
    for name in (
        "ComercioExterior11", "ComercioExterior20", "donat", "divisas", "implocal",
        "leyendasFiscales", "pfic", "TuristaPasajeroExtranjero", "nomina12", "registrofiscal",
        "pagoenespecie", "aerolineas", "valesdedespensa", "notariospublicos", "vehiculousado",
        "servicioparcialconstruccion", "renovacionysustitucionvehiculos", "certificadodestruccion",
        "arteantiguedades", "ine", "iedu", "ventavehiculos", "detallista",
        "EstadoDeCuentaCombustible12", "ConsumoDeCombustibles11", "GastosHidrocarburos10",
        "IngresosHidrocarburos10", "CartaPorte20", "CartaPorte30", "CartaPorte31",
        "hidrocarburospetroliferos",
    )
)


class CadenaError(ValueError):
    """The document cannot be turned into a CFDI 4.0 cadena original."""


class UnsupportedNodeError(CadenaError):
    """A SAT complement whose cadena rules are not implemented here."""


class SealError(ValueError):
    """The Sello is missing, malformed or does not verify.

    ``code`` is the Finkok code a PAC would answer with: 302 (Sello mal formado o
    inválido) or 303 (Sello no corresponde a emisor).
    """

    def __init__(self, reason: str, code: str = "302") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class CadenaUnavailable(SealError):
    """The Sello could not be checked: the cadena original cannot be built here (e.g. an
    unsupported SAT complement). Not proof of a bad seal."""



def normalize_space(value: str) -> str:
    """XPath 1.0 ``normalize-space`` (only space, tab, CR and LF count as white space)."""
    return _WS.sub(" ", value).strip(" ")


def _q(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"


def _c(name: str) -> str:
    return _q(CFDI_NS, name)


def _p(name: str) -> str:
    return _q(PAGOS_NS, name)


class _Cadena:
    """Collects ``|value`` chunks; ``spec`` strings list attributes, ``?`` marks optional."""

    def __init__(self) -> None:
        self.out: list[str] = []

    def attrs(self, el: etree._Element, spec: str) -> None:
        out, get = self.out, el.get
        for name in spec.split():
            if name[-1] == "?":
                value = get(name[:-1])
                if value is not None:
                    out.append("|" + normalize_space(value))
            else:
                out.append("|" + normalize_space(get(name, "")))

    def text(self, el: etree._Element) -> None:
        """XSLT built-in rules: an element without a template yields its text content."""
        self.out.append("".join(cast("list[str]", el.xpath(".//text()"))))  # text nodes are strings

    def result(self) -> str:
        return "|" + "".join(self.out) + "||"


_TRASLADO = "Base Impuesto TipoFactor TasaOCuota? Importe?"
_RETENCION = "Base Impuesto TipoFactor TasaOCuota Importe"


def _kids(el: etree._Element, tag: str) -> list[etree._Element]:
    return el.findall(tag)


def _path(el: etree._Element, *tags: str) -> list[etree._Element]:
    nodes = [el]
    for tag in tags:
        nodes = [kid for node in nodes for kid in node.findall(tag)]
    return nodes


def _comprobante(c: _Cadena, root: etree._Element) -> None:
    c.attrs(
        root,
        "Version Serie? Folio? Fecha FormaPago? NoCertificado CondicionesDePago? SubTotal "
        "Descuento? Moneda TipoCambio? Total TipoDeComprobante Exportacion MetodoPago? "
        "LugarExpedicion Confirmacion?",
    )
    for el in _kids(root, _c("InformacionGlobal")):
        c.attrs(el, "Periodicidad Meses Año")
    for rel in _kids(root, _c("CfdiRelacionados")):
        c.attrs(rel, "TipoRelacion")
        for el in _kids(rel, _c("CfdiRelacionado")):
            c.attrs(el, "UUID")
    for el in _kids(root, _c("Emisor")):
        c.attrs(el, "Rfc Nombre RegimenFiscal FacAtrAdquirente?")
    for el in _kids(root, _c("Receptor")):
        c.attrs(
            el,
            "Rfc Nombre DomicilioFiscalReceptor ResidenciaFiscal? NumRegIdTrib? "
            "RegimenFiscalReceptor UsoCFDI",
        )
    for conceptos in _kids(root, _c("Conceptos")):
        for el in _kids(conceptos, _c("Concepto")):
            _concepto(c, el)
    for imp in _kids(root, _c("Impuestos")):
        for el in _path(imp, _c("Retenciones"), _c("Retencion")):
            c.attrs(el, "Impuesto Importe")
        c.attrs(imp, "TotalImpuestosRetenidos?")
        for el in _path(imp, _c("Traslados"), _c("Traslado")):
            c.attrs(el, _TRASLADO)
        c.attrs(imp, "TotalImpuestosTrasladados?")
    for comp in _kids(root, _c("Complemento")):
        for el in comp.iterchildren(tag=etree.Element):
            _complement(c, el)


def _concepto(c: _Cadena, el: etree._Element) -> None:
    c.attrs(
        el,
        "ClaveProdServ NoIdentificacion? Cantidad ClaveUnidad Unidad? Descripcion "
        "ValorUnitario Importe Descuento? ObjetoImp",
    )
    for tr in _path(el, _c("Impuestos"), _c("Traslados"), _c("Traslado")):
        c.attrs(tr, _TRASLADO)
    for ret in _path(el, _c("Impuestos"), _c("Retenciones"), _c("Retencion")):
        c.attrs(ret, _RETENCION)
    for t in _kids(el, _c("ACuentaTerceros")):
        c.attrs(
            t,
            "RfcACuentaTerceros NombreACuentaTerceros RegimenFiscalACuentaTerceros "
            "DomicilioFiscalACuentaTerceros",
        )
    for ia in _kids(el, _c("InformacionAduanera")):
        c.attrs(ia, "NumeroPedimento")
    for cp in _kids(el, _c("CuentaPredial")):
        c.attrs(cp, "Numero")
    for cc in _kids(el, _c("ComplementoConcepto")):
        for kid in cc.iterchildren(tag=etree.Element):
            _complement(c, kid)
    for parte in el.iterdescendants(_c("Parte")):  # SAT walks every Parte below the Concepto
        c.attrs(parte, "ClaveProdServ NoIdentificacion? Cantidad Unidad? Descripcion "
                       "ValorUnitario? Importe?")
        for ia in parte.iterdescendants(_c("InformacionAduanera")):
            c.attrs(ia, "NumeroPedimento")


def _complement(c: _Cadena, el: etree._Element) -> None:
    qname = etree.QName(el)
    handler = _COMPLEMENTS.get(el.tag)
    if handler is not None:
        handler(c, el)
    elif qname.namespace in UNSUPPORTED_COMPLEMENT_NS:
        raise UnsupportedNodeError(
            f"the cadena original of complement {qname.localname} ({qname.namespace}) "
            "is not implemented"
        )
    else:
        c.text(el)


def _pagos20(c: _Cadena, pagos: etree._Element) -> None:
    c.attrs(pagos, "Version")
    for tot in _kids(pagos, _p("Totales")):
        c.attrs(
            tot,
            "TotalRetencionesIVA? TotalRetencionesISR? TotalRetencionesIEPS? "
            "TotalTrasladosBaseIVA16? TotalTrasladosImpuestoIVA16? TotalTrasladosBaseIVA8? "
            "TotalTrasladosImpuestoIVA8? TotalTrasladosBaseIVA0? TotalTrasladosImpuestoIVA0? "
            "TotalTrasladosBaseIVAExento? MontoTotalPagos",
        )
    for pago in _kids(pagos, _p("Pago")):
        c.attrs(
            pago,
            "FechaPago FormaDePagoP MonedaP TipoCambioP? Monto NumOperacion? RfcEmisorCtaOrd? "
            "NomBancoOrdExt? CtaOrdenante? RfcEmisorCtaBen? CtaBeneficiario? TipoCadPago? "
            "CertPago? CadPago? SelloPago?",
        )
        for dr in _kids(pago, _p("DoctoRelacionado")):
            c.attrs(
                dr,
                "IdDocumento Serie? Folio? MonedaDR EquivalenciaDR? NumParcialidad ImpSaldoAnt "
                "ImpPagado ImpSaldoInsoluto ObjetoImpDR",
            )
            for el in _path(dr, _p("ImpuestosDR"), _p("RetencionesDR"), _p("RetencionDR")):
                c.attrs(el, "BaseDR ImpuestoDR TipoFactorDR TasaOCuotaDR ImporteDR")
            for el in _path(dr, _p("ImpuestosDR"), _p("TrasladosDR"), _p("TrasladoDR")):
                c.attrs(el, "BaseDR ImpuestoDR TipoFactorDR TasaOCuotaDR? ImporteDR?")
        for imp in _kids(pago, _p("ImpuestosP")):
            for el in _path(imp, _p("RetencionesP"), _p("RetencionP")):
                c.attrs(el, "ImpuestoP ImporteP")
            for el in _path(imp, _p("TrasladosP"), _p("TrasladoP")):
                c.attrs(el, "BaseP ImpuestoP TipoFactorP TasaOCuotaP? ImporteP?")


_COMPLEMENTS: dict[str, Callable[[_Cadena, etree._Element], None]] = {
    _p("Pagos"): _pagos20,
}


def _root(doc: bytes | etree._Element | etree._ElementTree) -> etree._Element:
    if isinstance(doc, (bytes, bytearray)):
        return parse(bytes(doc))
    if isinstance(doc, etree._ElementTree):
        return doc.getroot()
    return doc


def comprobante_root(doc: bytes | etree._Element | etree._ElementTree) -> etree._Element:
    """The cfdi:Comprobante element of a CFDI 4.0, or :class:`CadenaError`."""
    root = _root(doc)
    if root.tag != _c("Comprobante"):
        raise CadenaError(f"root element is {root.tag!r}, not a CFDI 4.0 cfdi:Comprobante")
    if root.get("Version") != "4.0":
        raise CadenaError(f"Comprobante Version is {root.get('Version')!r}, expected '4.0'")
    return root


def cadena_original(doc: bytes | etree._Element | etree._ElementTree) -> str:
    """The CFDI 4.0 cadena original (``||4.0|...||``) of a Comprobante."""
    c = _Cadena()
    _comprobante(c, comprobante_root(doc))
    return c.result()


def serialize(root: etree._Element) -> bytes:
    """UTF-8 bytes with a double-quoted XML declaration; keeps comments around the root."""
    body = etree.tostring(root.getroottree(), encoding="UTF-8", xml_declaration=False)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + body


def seal(xml_bytes: bytes | etree._Element, csd: Csd, *, check_rfc: bool = True) -> bytes:
    """Set NoCertificado, Certificado and Sello, and return the serialized document.

    Refuses a document that is already stamped (a new Sello would break its TFD) and,
    unless ``check_rfc`` is false, one whose Emisor RFC is not the CSD's.
    """
    root = comprobante_root(xml_bytes)
    if root.find(f"{_c('Complemento')}/{_q(TFD_NS, 'TimbreFiscalDigital')}") is not None:
        raise SealError("the CFDI is already stamped (it has a TimbreFiscalDigital)", "307")
    emisor = root.find(_c("Emisor"))
    if check_rfc and (emisor is None or emisor.get("Rfc") != csd.rfc):
        found = None if emisor is None else emisor.get("Rfc")
        raise SealError(f"Emisor Rfc {found!r} is not the CSD's RFC {csd.rfc!r}", "303")
    root.set("NoCertificado", csd.no_certificado)
    root.set("Certificado", csd.certificado_b64)
    root.set("Sello", csd.sign(cadena_original(root).encode("utf-8")))
    return serialize(root)


def _b64(value: str, what: str) -> bytes:
    try:
        return base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise SealError(f"{what} is not valid base64") from None


def certificate_of(doc: bytes | etree._Element) -> x509.Certificate:
    """The X.509 certificate embedded in Comprobante/@Certificado."""
    root = comprobante_root(doc)
    text = root.get("Certificado") or ""
    if not text.strip():
        raise SealError("Certificado is missing or empty")
    try:
        return x509.load_der_x509_certificate(_b64(text, "Certificado"))
    except ValueError as exc:
        raise SealError(f"Certificado is not a DER X.509 certificate: {exc}") from None


def verify_seal(doc: bytes | etree._Element, *, check_emisor: bool = True) -> None:
    """Raise :class:`SealError` unless Sello verifies against the embedded Certificado.

    Also checks that NoCertificado is the certificate's serial and, with
    ``check_emisor``, that the Emisor RFC is the certificate's (code 303).
    """
    try:
        root = comprobante_root(doc)
    except CadenaError as exc:
        raise SealError(str(exc)) from None
    sello = root.get("Sello") or ""
    if not sello.strip():
        raise SealError("Sello is missing or empty")
    signature = _b64(sello, "Sello")
    cert = certificate_of(root)
    try:
        serial = no_certificado(cert)
    except CsdError as exc:
        raise SealError(str(exc)) from None
    if root.get("NoCertificado") != serial:
        raise SealError(
            f"NoCertificado {root.get('NoCertificado')!r} is not the serial of Certificado ({serial})"
        )
    public_key = cert.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise SealError("Certificado does not hold an RSA key")
    try:
        cadena = cadena_original(root)
    except CadenaError as exc:
        raise CadenaUnavailable(f"cannot build the cadena original: {exc}") from None
    try:
        public_key.verify(signature, cadena.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise SealError(
            "Sello does not verify against Certificado: the document changed after sealing, "
            "or it was sealed with another key"
        ) from None
    if check_emisor:
        emisor = root.find(_c("Emisor"))
        rfc = emisor.get("Rfc") if emisor is not None else None
        try:
            cert_rfc = rfc_of(cert)
        except CsdError as exc:
            raise SealError(str(exc), "303") from None
        if rfc != cert_rfc:
            raise SealError(f"Emisor Rfc {rfc!r} is not the certificate's RFC {cert_rfc!r}", "303")
