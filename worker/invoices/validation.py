"""What intake checks before it stores a CFDI, each refusal with a reason that names it.

Nothing here rewrites the document: the Sello is over the exact bytes, so we only read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from lxml import etree

from worker.cfdi.preflight import PreflightError, preflight
from worker.cfdi.xml import CFDI_NS, TFD_NS, UnsafeXmlError, parse
from worker.ids import segment_problem

MAX_ID_LENGTH = 64
_ID_RE = re.compile(r"^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$")  # printable ASCII, trimmed
_DECL_ENCODING_RE = re.compile(rb"^<\?xml[^>]*encoding=[\"']([A-Za-z0-9._-]+)[\"']")


class InvoiceRefused(ValueError):
    """Intake refused the invoice. ``reason`` is a stable code; the text says what is wrong.

    ``code``, when set, is the SAT/Finkok code the refusal avoids (``401``, ``302``,
    ``CFDI40158``...): what Finkok would have answered had the document gone out.
    """

    def __init__(self, reason: str, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.code = code


@dataclass(frozen=True, slots=True)
class CheckedCfdi:
    """The few values intake keeps in columns, read from a valid sealed CFDI 4.0, and what
    the pre-flight checks left on record (skipped checks, lenient findings)."""

    emisor_rfc: str
    receptor_rfc: str
    total: str
    fecha: str | None = None  # Comprobante Fecha, as written (local time, no offset)
    notes: dict[str, str] = field(default_factory=dict)


def check_ids(empresa_ref_id: str | None, reference: str | None, pedidoga: str | None) -> None:
    for name, value, required in (
        ("empresaRefId", empresa_ref_id, True),
        ("reference", reference, True),
        ("pedidoga", pedidoga, False),
    ):
        if value is None or value == "":
            if required:
                raise InvoiceRefused("missing_id", f"{name} is required")
            continue
        if not isinstance(value, str) or len(value) > MAX_ID_LENGTH or not _ID_RE.match(value):
            raise InvoiceRefused(
                "invalid_id",
                f"{name} must be 1-{MAX_ID_LENGTH} printable ASCII characters without "
                f"leading or trailing spaces, got {str(value)[:80]!r}",
            )
        problem = segment_problem(value) if name == "empresaRefId" else None
        if problem is not None:  # SIF is called at .../empresas/{empresaRefId}/...
            raise InvoiceRefused("invalid_id", f"empresaRefId {value!r} {problem}")


Checks = Literal["strict", "lenient", "off"]


def check_cfdi(data: bytes, *, max_bytes: int, checks: Checks = "strict") -> CheckedCfdi:
    """Refuse anything Finkok would refuse for its shape, and anything unsafe to parse;
    then the pre-flight checks (``worker.cfdi.preflight``: seal 302/303, Fecha 401,
    certificate at Fecha 305, receptor rules CFDI40157-40161) per ``checks``: ``strict``
    refuses (the reason names the code it avoids), ``lenient`` accepts and records the
    finding, ``off`` skips them. A check that cannot run (no cadena for an unsupported
    complement) is recorded, never a refusal."""
    if not data:
        raise InvoiceRefused("empty", "the XML is empty")
    if len(data) > max_bytes:
        raise InvoiceRefused(
            "too_large", f"the XML is {len(data)} bytes, over the limit of {max_bytes} bytes"
        )
    _check_utf8(data)
    try:
        root = parse(data)
    except UnsafeXmlError as exc:
        reason = "dtd_forbidden" if "DTD" in str(exc) else "not_well_formed"
        raise InvoiceRefused(reason, str(exc)) from None

    if root.tag != f"{{{CFDI_NS}}}Comprobante":
        raise InvoiceRefused(
            "not_cfdi40",
            f"root element is {_pretty(root.tag)}, expected cfdi:Comprobante in {CFDI_NS} "
            "(CFDI 4.0)",
        )
    version = root.get("Version")
    if version != "4.0":
        raise InvoiceRefused("not_cfdi40", f"Comprobante Version is {version!r}, expected '4.0'")

    missing = [a for a in ("Sello", "NoCertificado", "Certificado") if not root.get(a, "").strip()]
    if missing:
        raise InvoiceRefused(
            "unsealed", f"the CFDI is not sealed: missing {', '.join(missing)} on Comprobante"
        )
    if root.find(f"{{{CFDI_NS}}}Complemento/{{{TFD_NS}}}TimbreFiscalDigital") is not None:
        raise InvoiceRefused(
            "already_stamped",
            "the CFDI already contains a TimbreFiscalDigital (Finkok would answer 707)",
        )

    emisor = root.find(f"{{{CFDI_NS}}}Emisor")
    receptor = root.find(f"{{{CFDI_NS}}}Receptor")
    if emisor is None or not emisor.get("Rfc"):
        raise InvoiceRefused("missing_emisor", "cfdi:Emisor with an Rfc is required")
    if receptor is None or not receptor.get("Rfc"):
        raise InvoiceRefused("missing_receptor", "cfdi:Receptor with an Rfc is required")
    total = root.get("Total")
    if not total:
        raise InvoiceRefused("missing_total", "Comprobante Total is required")
    return CheckedCfdi(
        emisor_rfc=emisor.get("Rfc", "")[:13],
        receptor_rfc=receptor.get("Rfc", "")[:13],
        total=total[:32],
        fecha=root.get("Fecha"),
        notes=_preflight(root, checks),
    )


def _preflight(root: etree._Element, checks: Checks) -> dict[str, str]:
    if checks == "off":
        return {}
    try:
        report = preflight(root)
    except PreflightError as exc:
        if checks == "strict":
            raise InvoiceRefused(exc.reason, exc.message, code=exc.code) from None
        return {"finding": f"{exc.code}: {exc.message}"}  # lenient: Finkok decides
    return {f"skipped_{name}": why for name, why in report.skipped.items()}


UTF8_BOM = b"\xef\xbb\xbf"


def strip_bom(data: bytes) -> bytes:
    """The document without a leading UTF-8 byte order mark.

    Decided at the door: a BOM is **stripped**, not refused. Windows tools (.NET's default
    UTF-8 encoder, Notepad) write one; it is not part of the document: the Sello is over
    the cadena original, built from the parsed values, so the seal is the same with or
    without it, and what intake stores, hashes and sends to Finkok is the document without
    it (the same document with and without a BOM is the same invoice).
    """
    return data[len(UTF8_BOM):] if data.startswith(UTF8_BOM) else data


def _check_utf8(data: bytes) -> None:
    """SAT requires UTF-8; a declared other encoding or invalid bytes are refused.

    Only what the parser decodes as UTF-8 passes: libxml2 recognises UTF-16/UTF-32 without
    a BOM from the NUL bytes around the first ``<`` (its encoding detection reads the
    first four bytes) and decodes them as such, although ASCII content in UTF-16LE is also
    valid UTF-8 byte for byte. A NUL byte there is refused; a NUL further on is left to
    the parser (XML allows no U+0000: not well-formed).
    """
    head = data[:200].lstrip(UTF8_BOM)
    declared = _DECL_ENCODING_RE.match(head)
    if declared and declared.group(1).decode("ascii").lower().replace("_", "-") not in (
        "utf-8",
        "utf8",
    ):
        raise InvoiceRefused(
            "not_utf8", f"the XML declares encoding {declared.group(1).decode()}, CFDI must be UTF-8"
        )
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvoiceRefused(
            "not_utf8", f"the XML is not valid UTF-8 (bad byte at offset {exc.start})"
        ) from None
    nul = data.find(b"\x00", 0, 4)
    if nul >= 0:
        raise InvoiceRefused(
            "not_utf8", f"the XML has a NUL byte at offset {nul}: UTF-16 or UTF-32 without a "
            "byte order mark? CFDI must be UTF-8")


def _pretty(tag: str) -> str:
    qname = etree.QName(tag)
    return f"{qname.localname} in {qname.namespace}" if qname.namespace else qname.localname
