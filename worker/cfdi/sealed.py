"""The sealed document inside a stamped CFDI: what the emisor signed, without the PAC's TFD.

A PAC stamps by adding ``cfdi:Complemento/tfd:TimbreFiscalDigital`` to the emisor's sealed
document; it may also re-serialize it (a new XML declaration, another indentation, the
``tfd`` namespace declared elsewhere). :func:`sealed_digest` gives one SHA-256 for the
document the emisor sealed, the same for the pre-CFDI we stored (``invoices.xml``) and for
any stamped CFDI made from it, so a stamp found at Finkok can be matched to its invoice:

* the TimbreFiscalDigital is removed, and a ``cfdi:Complemento`` left empty with it;
* whitespace-only text between elements is dropped (it is not part of the cadena original,
  so the Sello does not cover it);
* the rest is written as exclusive XML canonicalization (C14N 1.0): attribute order,
  quoting, the XML declaration and unused namespace declarations no longer matter.

Every attribute, element and text that the Sello covers is kept, so two documents with the
same digest carry the same data and the same ``Sello``. Parsing is the project's safe
parser (no DTD, no entities, no network).
"""

from __future__ import annotations

import hashlib

from lxml import etree

from worker.cfdi.xml import CFDI_NS, TFD_NS, parse

COMPROBANTE = f"{{{CFDI_NS}}}Comprobante"
COMPLEMENTO = f"{{{CFDI_NS}}}Complemento"
TFD = f"{{{TFD_NS}}}TimbreFiscalDigital"


class NotACfdi(ValueError):
    """The bytes are not a CFDI (cfdi:Comprobante) we can digest."""


def sealed_document(xml: bytes) -> etree._Element:
    """The Comprobante with its TFD (and a Complemento it leaves empty) removed."""
    root = parse(xml)
    if root.tag != COMPROBANTE:
        raise NotACfdi(f"root is {root.tag}, not cfdi:Comprobante")
    for complemento in root.findall(COMPLEMENTO):
        for tfd in complemento.findall(TFD):
            complemento.remove(tfd)
        if len(complemento) == 0 and not (complemento.text or "").strip():
            root.remove(complemento)
    for element in root.iter():
        if element.text is not None and not element.text.strip():
            element.text = None
        if element.tail is not None and not element.tail.strip():
            element.tail = None
    return root


def sealed_digest(xml: bytes) -> str:
    """SHA-256 (hex) of the sealed document inside ``xml`` (stamped or not); see the module."""
    canonical = etree.tostring(sealed_document(xml), method="c14n", exclusive=True)
    return hashlib.sha256(canonical).hexdigest()


def sello(xml: bytes) -> str:
    """The emisor's ``Sello`` of a CFDI (stamped or not)."""
    return parse(xml).get("Sello") or ""
