"""Safe XML parsing shared by intake, extraction and the sandboxes.

Every CFDI we read comes from outside. The parser resolves no entities, loads no DTD,
touches no network and refuses huge trees; a document that declares a DTD at all is
refused before parsing (XXE, billion laughs), because the bytes must also be safe for
every other tool that will read them later (Finkok, SAT, the ERP).
"""

from __future__ import annotations

import re

from lxml import etree

CFDI_NS = "http://www.sat.gob.mx/cfd/4"
TFD_NS = "http://www.sat.gob.mx/TimbreFiscalDigital"
PAGOS_NS = "http://www.sat.gob.mx/Pagos20"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
NS = {"cfdi": CFDI_NS, "tfd": TFD_NS, "pago20": PAGOS_NS}


class UnsafeXmlError(ValueError):
    """The bytes are not well-formed XML, or declare a DTD/entities."""


DTD_REFUSED = "a DTD or entity declaration is not allowed in a CFDI (XXE risk)"
# A DOCTYPE in the prolog (after an optional BOM, XML declaration, comments and PIs), looked
# for in the first PROLOG_SCAN_BYTES before parsing: libxml2 may fail on what the DTD
# declares (entity amplification in a billion laughs) before the parsed tree could show
# the DTD. Every quantifier is possessive, so the scan is linear (no ReDoS).
PROLOG_SCAN_BYTES = 64 * 1024
_PROLOG_DOCTYPE = re.compile(
    rb"(?:\xef\xbb\xbf)?+\s*+(?:<\?xml[^>]*+>)?+"
    rb"(?:\s++|<!--(?:[^-]++|-(?!->))*+-->|<\?(?:[^?]++|\?(?!>))*+\?>)*+<!DOCTYPE"
)


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_blank_text=False,
    )


def parse(data: bytes) -> etree._Element:
    """Parse untrusted XML bytes into an element, refusing DTDs and entity declarations."""
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError("XML must be given as bytes (the exact bytes that were sealed)")
    if _PROLOG_DOCTYPE.match(bytes(data[:PROLOG_SCAN_BYTES])):
        raise UnsafeXmlError(DTD_REFUSED)
    try:
        tree = etree.fromstring(bytes(data), _parser()).getroottree()
    except etree.XMLSyntaxError as exc:
        # libxml2 messages may hold a newline; a refusal reads as one line.
        message = re.sub(r"\s+", " ", str(exc.msg)).replace(" ,", ",").strip()
        raise UnsafeXmlError(f"not well-formed XML: {message}") from None
    # lxml-stubs' DocInfo lacks doctype (lxml has it)
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:  # type: ignore[union-attr]
        raise UnsafeXmlError(DTD_REFUSED)
    return tree.getroot()
