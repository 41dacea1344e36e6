"""TimbreFiscalDigital 1.1: what a PAC adds when it stamps, and how to check it.

:func:`add_tfd` is the local PAC sandbox's stamp. It inserts the TFD into the sealed bytes
as text, so every other byte of the document stays as the emisor sealed it (a real PAC
returns the emisor's document with the TFD added, and the Sello must still verify).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
import uuid as uuid_mod
import xml.parsers.expat
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from lxml import etree

from worker.cfdi.csd import Csd
from worker.cfdi.sealing import comprobante_root, normalize_space
from worker.cfdi.xml import CFDI_NS, TFD_NS, XSI_NS, parse

TFD_TAG = f"{{{TFD_NS}}}TimbreFiscalDigital"
TFD_SCHEMA_LOCATION = (
    f"{TFD_NS} http://www.sat.gob.mx/sitio_internet/cfd/TimbreFiscalDigital/"
    "TimbreFiscalDigitalv11.xsd"
)
DEFAULT_RFC_PROV_CERTIF = "SPR190613I52"
_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# An XML start tag up to its end; quoted attribute values may contain '>'.
_TAG_END = re.compile(rb"""<[^\s/>]+(?:\s+[^\s=]+\s*=\s*(?:"[^"]*"|'[^']*'))*\s*(/?)>""")


class TfdError(ValueError):
    """The document has no usable TimbreFiscalDigital, or cannot be stamped."""


@dataclass(frozen=True)
class _Offsets:
    complemento_start: int | None = None
    complemento_end: int | None = None  # offset of "</...Complemento>" (after "<.../>" if empty)
    addenda_start: int | None = None
    root_end: int | None = None


def find_tfd(doc: bytes | etree._Element) -> etree._Element | None:
    """The cfdi:Complemento/tfd:TimbreFiscalDigital element, if any."""
    root = parse(doc) if isinstance(doc, (bytes, bytearray)) else doc
    return root.find(f"{{{CFDI_NS}}}Complemento/{TFD_TAG}")


def tfd_cadena_original(tfd: etree._Element) -> str:
    """``||1.1|UUID|FechaTimbrado|RfcProvCertif[|Leyenda]|SelloCFD|NoCertificadoSAT||``."""
    parts = [
        normalize_space(tfd.get(name, "")) for name in ("Version", "UUID", "FechaTimbrado", "RfcProvCertif")
    ]
    leyenda = tfd.get("Leyenda")
    if leyenda is not None:
        parts.append(normalize_space(leyenda))
    parts += [normalize_space(tfd.get(name, "")) for name in ("SelloCFD", "NoCertificadoSAT")]
    return "||" + "|".join(parts) + "||"


def _scan(xml_bytes: bytes) -> _Offsets:
    """Byte offsets of the Complemento, the Addenda and the root's end tag (via expat)."""
    found: dict[str, int] = {}
    depth = 0
    parser = xml.parsers.expat.ParserCreate(namespace_separator=" ")
    comp = f"{CFDI_NS} Complemento"
    adenda = f"{CFDI_NS} Addenda"

    def start(name: str, _attrs: object) -> None:
        nonlocal depth
        depth += 1
        if depth == 2 and name == comp and "cs" not in found:
            found["cs"] = parser.CurrentByteIndex
        elif depth == 2 and name == adenda and "as" not in found:
            found["as"] = parser.CurrentByteIndex

    def end(name: str) -> None:
        nonlocal depth
        if depth == 2 and name == comp and "ce" not in found:
            found["ce"] = parser.CurrentByteIndex
        elif depth == 1:
            found["re"] = parser.CurrentByteIndex
        depth -= 1

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.Parse(xml_bytes, True)
    return _Offsets(found.get("cs"), found.get("ce"), found.get("as"), found.get("re"))


def _fecha(value: dt.datetime | str) -> str:
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S")
    dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%S")  # raises on a bad format
    return value


def build_tfd_element(
    *,
    sello_cfd: str,
    uuid: str | uuid_mod.UUID,
    fecha_timbrado: dt.datetime | str,
    pac: Csd,
    rfc_prov_certif: str = DEFAULT_RFC_PROV_CERTIF,
    leyenda: str | None = None,
) -> etree._Element:
    """A signed tfd:TimbreFiscalDigital element (standalone)."""
    uid = str(uuid).upper()
    if not _UUID_RE.match(uid):
        raise TfdError(f"UUID {uid!r} is not 8-4-4-4-12 hexadecimal")
    tfd = etree.Element(TFD_TAG, nsmap={"tfd": TFD_NS, "xsi": XSI_NS})
    tfd.set(f"{{{XSI_NS}}}schemaLocation", TFD_SCHEMA_LOCATION)
    tfd.set("Version", "1.1")
    tfd.set("UUID", uid)
    tfd.set("FechaTimbrado", _fecha(fecha_timbrado))
    tfd.set("RfcProvCertif", rfc_prov_certif)
    if leyenda is not None:
        tfd.set("Leyenda", leyenda)
    tfd.set("SelloCFD", sello_cfd)
    tfd.set("NoCertificadoSAT", pac.no_certificado)
    tfd.set("SelloSAT", pac.sign(tfd_cadena_original(tfd).encode("utf-8")))
    return tfd


def add_tfd(
    xml_bytes: bytes,
    *,
    uuid: str | uuid_mod.UUID,
    fecha_timbrado: dt.datetime | str,
    pac: Csd,
    rfc_prov_certif: str = DEFAULT_RFC_PROV_CERTIF,
    leyenda: str | None = None,
) -> bytes:
    """Stamp a sealed CFDI: append Complemento/TimbreFiscalDigital 1.1 signed by ``pac``.

    The TFD goes at the end of an existing cfdi:Complemento, or in a new one placed
    before cfdi:Addenda (or the root's end tag); all other bytes are kept.
    """
    root = comprobante_root(xml_bytes)
    if find_tfd(root) is not None:
        raise TfdError("the CFDI already carries a TimbreFiscalDigital (timbre previo)")
    sello = root.get("Sello") or ""
    if not sello:
        raise TfdError("the CFDI is not sealed (no Sello): a PAC stamps sealed documents only")
    if xml_bytes.lstrip(b"\xef\xbb\xbf").lstrip().startswith(b"<?xml"):
        decl = xml_bytes[: xml_bytes.find(b"?>")].lower()
        if b"encoding" in decl and b"utf-8" not in decl and b"utf8" not in decl:
            raise TfdError("a CFDI must be UTF-8 encoded")
    tfd = build_tfd_element(
        sello_cfd=sello, uuid=uuid, fecha_timbrado=fecha_timbrado, pac=pac,
        rfc_prov_certif=rfc_prov_certif, leyenda=leyenda,
    )
    # Declare xsi on the TFD only when the document does not already bind it.
    if root.nsmap.get("xsi") == XSI_NS:
        tfd_bytes = etree.tostring(tfd, encoding="UTF-8").replace(
            f' xmlns:xsi="{XSI_NS}"'.encode(), b"", 1
        )
    else:
        tfd_bytes = etree.tostring(tfd, encoding="UTF-8")
    return _insert(xml_bytes, root, tfd_bytes)


def _insert(xml_bytes: bytes, root: etree._Element, tfd_bytes: bytes) -> bytes:
    off = _scan(xml_bytes)
    prefix = root.prefix
    cfdi_pfx = f"{prefix}:" if prefix else ""
    if off.complemento_start is not None and off.complemento_end is not None:
        m = _TAG_END.match(xml_bytes, off.complemento_start)
        if m is None:
            raise TfdError("cannot locate the end of the cfdi:Complemento start tag")
        if m.group(1) == b"/":  # an empty-element tag: <cfdi:Complemento/>
            tag = xml_bytes[off.complemento_start : m.end() - 2].rstrip()
            new = tag + b">" + tfd_bytes + f"</{cfdi_pfx}Complemento>".encode()
            return xml_bytes[: off.complemento_start] + new + xml_bytes[m.end() :]
        end = off.complemento_end
        return xml_bytes[:end] + tfd_bytes + xml_bytes[end:]
    at = off.addenda_start if off.addenda_start is not None else off.root_end
    if at is None:
        raise TfdError("cannot locate the end of cfdi:Comprobante")
    block = f"<{cfdi_pfx}Complemento>".encode() + tfd_bytes + f"</{cfdi_pfx}Complemento>".encode()
    # Keep the layout tidy: indent like the previous line when the document is indented.
    line_start = xml_bytes.rfind(b"\n", 0, at) + 1
    indent = xml_bytes[line_start:at]
    if line_start and indent.strip() == b"":
        child_indent = indent + b"  " if at == off.root_end else indent
        block = block + b"\n" + indent
        return xml_bytes[:line_start] + child_indent + block + xml_bytes[at:]
    return xml_bytes[:at] + block + xml_bytes[at:]


def verify_tfd(doc: bytes | etree._Element, pac_cert: x509.Certificate) -> None:
    """Raise :class:`TfdError` unless SelloSAT verifies with ``pac_cert`` and SelloCFD = Sello."""
    root = parse(doc) if isinstance(doc, (bytes, bytearray)) else doc
    tfd = find_tfd(root)
    if tfd is None:
        raise TfdError("no cfdi:Complemento/tfd:TimbreFiscalDigital: the CFDI is not stamped")
    if tfd.get("SelloCFD") != root.get("Sello"):
        raise TfdError("TFD SelloCFD is not the Comprobante's Sello")
    key = pac_cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise TfdError("the PAC certificate does not hold an RSA key")
    try:
        signature = base64.b64decode(tfd.get("SelloSAT") or "", validate=True)
        key.verify(signature, tfd_cadena_original(tfd).encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    except (binascii.Error, ValueError, InvalidSignature):
        raise TfdError("SelloSAT does not verify against the given PAC certificate") from None
