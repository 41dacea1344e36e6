"""Bad input for intake, made in code from one freshly sealed invoice.

Each case is the bytes a producer might send (by mistake or on purpose), the reason code
intake must refuse it with, and words its message must contain so a person can tell what
is wrong. No case needs static files: every one is a few bytes, or is derived from a real
sealed CFDI at test time (whose Fecha must be fresh anyway).

The corpus runs with a size limit above libxml2's own 10 MB text limit (``MAX_BYTES``),
so a huge attribute reaches the parser and its refusal is the parser's, named.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass
from functools import lru_cache

MAX_BYTES = 12 * 1024 * 1024  # BILLING_MAX_XML_BYTES for the corpus
EMPRESA = "E1"
CFDI40 = b"http://www.sat.gob.mx/cfd/4"


@dataclass(frozen=True)
class BadInput:
    name: str
    data: bytes
    reason: str  # intake's reason code
    words: tuple[str, ...]  # each must appear in the message (case-insensitive)
    empresa: str = EMPRESA
    reference: str = ""  # default: BAD-<name>

    @property
    def ref(self) -> str:
        return self.reference or f"BAD-{self.name}"


@lru_cache(maxsize=1)
def sealed() -> bytes:
    """One valid sealed CFDI 4.0 (receptor name with an Ñ: a multi-byte UTF-8 character)."""
    from worker.cfdi.factory import build_invoice

    return build_invoice(folio="badinput", receptor_nombre="UNIVERSIDAD ROBOTICA ESPAÑOLA")


def _split_decl(xml: bytes) -> tuple[bytes, bytes]:
    end = xml.index(b"?>") + 2
    return xml[:end], xml[end:]


def _with_doctype(doctype: bytes, body_edit: tuple[bytes, bytes] | None = None) -> bytes:
    decl, body = _split_decl(sealed())
    if body_edit is not None:
        body = body.replace(body_edit[0], body_edit[1], 1)
    return decl + b"\n" + doctype + body


def _attr(name: str, value: bytes | None, xml: bytes | None = None) -> bytes:
    """The invoice with root attribute ``name`` set to ``value`` (None: removed)."""
    xml = xml or sealed()
    pattern = re.compile(rb'\s' + name.encode() + rb'="[^"]*"')
    replacement = b"" if value is None else b" " + name.encode() + b'="' + value + b'"'
    out, n = pattern.subn(lambda _: replacement, xml, count=1)
    assert n == 1, name
    return out


def _stamped() -> bytes:
    from worker.cfdi.csd import sandbox_pac_csd
    from worker.cfdi.factory import mexico_city_now
    from worker.cfdi.tfd import add_tfd

    fecha = mexico_city_now().strftime("%Y-%m-%dT%H:%M:%S")
    return add_tfd(sealed(), uuid=str(uuid.uuid4()).upper(), fecha_timbrado=fecha,
                   pac=sandbox_pac_csd())


def _billion_laughs() -> bytes:
    entities = b'<!ENTITY lol0 "lol">' + b"".join(
        b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1)) * 10) for i in range(1, 10)
    )
    # Referenced in the content, so a parser that expands entities would build 10^9 "lol".
    return _with_doctype(b"<!DOCTYPE cfdi:Comprobante [" + entities + b"]>\n",
                         (b"</cfdi:Comprobante>", b"&lol9;</cfdi:Comprobante>"))


def _deeply_nested(levels: int = 100_000) -> bytes:
    return sealed().replace(
        b"</cfdi:Comprobante>", b"<a>" * levels + b"</a>" * levels + b"</cfdi:Comprobante>"
    )


def _build(**kw: object) -> bytes:
    from worker.cfdi.factory import build_invoice

    return build_invoice(**kw)  # type: ignore[arg-type]


def corpus() -> list[BadInput]:
    from worker.cfdi.factory import mexico_city_now

    xml = sealed()
    decl, _ = _split_decl(xml)
    nombre = "ESPAÑOLA".encode()
    assert nombre in xml
    dtd = ("dtd", "not allowed", "XXE")
    not_wf = "not well-formed XML"
    return [
        BadInput("empty", b"", "empty", ("empty",)),
        BadInput("whitespace_only", b" \n\t \n", "not_well_formed", (not_wf,)),
        BadInput("bom_then_garbage", b"\xef\xbb\xbfgarbage\x01 not xml", "not_well_formed",
                 (not_wf, "start tag expected")),
        # ASCII content in UTF-16LE without a BOM is valid UTF-8 byte for byte, and libxml2
        # would decode it as UTF-16: only what the parser reads as UTF-8 passes.
        BadInput("utf16le_no_bom", '<?xml version="1.0"?><a/>'.encode("utf-16-le"), "not_utf8",
                 ("NUL byte", "UTF-16")),
        BadInput("pdf_binary", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n",
                 "not_utf8", ("not valid UTF-8", "offset 10")),
        BadInput("json_not_xml", b'{"xml": "<cfdi:Comprobante/>"}', "not_well_formed",
                 (not_wf, "start tag expected")),
        BadInput("truncated", xml[: len(xml) // 2], "not_well_formed", (not_wf,)),
        BadInput("truncated_end_tag", xml.rstrip()[:-3], "not_well_formed", (not_wf,)),
        BadInput("xxe_file", _with_doctype(
            b'<!DOCTYPE cfdi:Comprobante [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n',
            (b"</cfdi:Comprobante>", b"&xxe;</cfdi:Comprobante>")), "dtd_forbidden", dtd),
        BadInput("xxe_network", _with_doctype(
            b'<!DOCTYPE cfdi:Comprobante [<!ENTITY xxe SYSTEM "http://127.0.0.1:9/x">]>\n',
            (b"</cfdi:Comprobante>", b"&xxe;</cfdi:Comprobante>")), "dtd_forbidden", dtd),
        BadInput("external_dtd", _with_doctype(
            b'<!DOCTYPE cfdi:Comprobante SYSTEM "http://127.0.0.1:9/evil.dtd">\n'),
            "dtd_forbidden", dtd),
        BadInput("parameter_entity", _with_doctype(
            b'<!DOCTYPE cfdi:Comprobante [<!ENTITY % ext SYSTEM "http://127.0.0.1:9/e.dtd"> %ext;]>\n'),
            "dtd_forbidden", dtd),
        BadInput("billion_laughs", _billion_laughs(), "dtd_forbidden", dtd),
        BadInput("quadratic_blowup", _with_doctype(
            b'<!DOCTYPE cfdi:Comprobante [<!ENTITY a "' + b"x" * 50_000 + b'">]>\n',
            (b"</cfdi:Comprobante>", b"&a;" * 200 + b"</cfdi:Comprobante>")),
            "dtd_forbidden", dtd),
        BadInput("oversize", xml + b" " * (MAX_BYTES - len(xml) + 1), "too_large",
                 ("over the limit", str(MAX_BYTES))),
        BadInput("huge_attribute", _attr("Serie", b"A" * 10_500_000), "not_well_formed",
                 (not_wf, "limit exceeded")),
        BadInput("deeply_nested", _deeply_nested(), "not_well_formed",
                 (not_wf, "excessive depth", "256")),
        BadInput("wrong_root", xml.replace(b"cfdi:Comprobante", b"cfdi:Factura"), "not_cfdi40",
                 ("root element is Factura", "expected cfdi:Comprobante")),
        BadInput("not_namespaced", decl + b"<Comprobante Version=\"4.0\"/>", "not_cfdi40",
                 ("root element is Comprobante", "expected cfdi:Comprobante")),
        BadInput("cfdi33", _attr("Version", b"3.3", xml.replace(CFDI40, b"http://www.sat.gob.mx/cfd/3")),
                 "not_cfdi40", ("http://www.sat.gob.mx/cfd/3", "CFDI 4.0")),
        BadInput("version_33_in_40_namespace", _attr("Version", b"3.3"), "not_cfdi40",
                 ("Version is '3.3'", "'4.0'")),
        BadInput("unsealed", _attr("Sello", None), "unsealed", ("not sealed", "Sello")),
        BadInput("unsealed_blank", _attr("Certificado", None, _attr("Sello", b"  ")), "unsealed",
                 ("not sealed", "Sello", "Certificado")),
        BadInput("already_stamped", _stamped(), "already_stamped", ("TimbreFiscalDigital", "707")),
        BadInput("latin1_bytes", xml.replace(nombre, "ESPAÑOLA".encode("latin-1")), "not_utf8",
                 ("not valid UTF-8", "offset")),
        BadInput("declares_latin1", xml.replace(b'encoding="UTF-8"', b'encoding="ISO-8859-1"', 1),
                 "not_utf8", ("declares encoding ISO-8859-1", "UTF-8")),
        BadInput("utf16", xml.decode("utf-8").encode("utf-16"), "not_utf8", ("not valid UTF-8",)),
        BadInput("nul_in_attribute", _attr("Serie", b"R\x00B"), "not_well_formed",
                 (not_wf, "invalid character")),
        BadInput("undefined_entity", _attr("Serie", b"&nbsp;"), "not_well_formed",
                 (not_wf, "nbsp")),
        BadInput("no_receptor", re.sub(rb"<cfdi:Receptor [^>]*/>", b"", xml, count=1),
                 "missing_receptor", ("cfdi:Receptor",)),
        BadInput("no_total", _attr("Total", None), "missing_total", ("Total",)),
        # Pre-flight checks (worker/cfdi/preflight.py): what Finkok would refuse, refused here
        # with the code it avoids, through every entry point that runs this corpus.
        BadInput("edited_after_sealing", xml.replace(b"ESPA\xc3\x91OLA", b"ESPANOLA", 1),
                 "bad_seal", ("Finkok would answer 302",)),
        BadInput("fecha_73_hours_old", _build(fecha=mexico_city_now() - dt.timedelta(hours=73)),
                 "fecha_out_of_range", ("Finkok would answer 401",)),
        BadInput("receptor_regimen_unknown", _build(receptor_regimen="999"), "receptor_rules",
                 ("Finkok would answer CFDI40157",)),
        BadInput("reference_with_tab", xml, "invalid_id", ("reference", "printable ASCII"),
                 reference="BAD\tref"),
        BadInput("empresa_too_long", xml, "invalid_id", ("empresaRefId", "1-64"),
                 empresa="E" * 65),
    ]
