"""Reading a pre-CFDI (or retention) the way a PAC does before stamping it."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
from dataclasses import dataclass

from lxml import etree

from worker.cfdi.xml import CFDI_NS, TFD_NS, UnsafeXmlError, parse

RET_NS = "http://www.sat.gob.mx/esquemas/retencionpago/2"

try:  # Mexico City has had no DST since 2022: UTC-6 when tzdata is missing.
    from zoneinfo import ZoneInfo

    MX_TZ: dt.tzinfo = ZoneInfo("America/Mexico_City")
except Exception:  # pragma: no cover - depends on the host's tz database
    MX_TZ = dt.timezone(dt.timedelta(hours=-6))


class Refusal(Exception):
    """The document cannot be stamped: answer incidencia ``code``."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(code, detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class PreCfdi:
    raw: bytes
    root: etree._Element
    kind: str  # "cfdi" | "retencion"
    key: str  # SHA-256 of the Sello: how a repeat of the same document is recognised
    sello: str
    fecha: str | None
    emisor_rfc: str | None
    receptor_rfc: str | None
    has_tfd: bool
    relacionados: tuple[str, ...]


def decode_b64(text: str | None) -> bytes:
    if not text:
        raise Refusal("705", "empty xml parameter")
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise Refusal("705", "xml is not base64") from None


def read(raw: bytes, *, retention: bool = False) -> PreCfdi:
    """Parse safely and pick out what the stamp decision needs; Refusal(301/705/302)."""
    try:
        root = parse(raw)
    except UnsafeXmlError as exc:
        raise Refusal("301", str(exc)) from None
    ns, tag = (RET_NS, "Retenciones") if retention else (CFDI_NS, "Comprobante")
    if root.tag != f"{{{ns}}}{tag}":
        raise Refusal("705", f"root is {root.tag}, expected {{{ns}}}{tag}")
    if not retention and root.get("Version") != "4.0":
        raise Refusal("705", "only CFDI 4.0 can be stamped")
    sello = (root.get("Sello") or "").strip()
    if not sello:
        raise Refusal("302", "no Sello")
    if retention:
        emisor = root.find(f"{{{ns}}}Emisor")
        receptor = root.find(f"{{{ns}}}Receptor/*")
        emisor_rfc = emisor.get("RfcE") if emisor is not None else None
        receptor_rfc = (
            (receptor.get("RfcR") or receptor.get("NumRegIdTribR")) if receptor is not None else None
        )
        fecha = root.get("FechaExp")
    else:
        emisor = root.find(f"{{{ns}}}Emisor")
        receptor = root.find(f"{{{ns}}}Receptor")
        emisor_rfc = emisor.get("Rfc") if emisor is not None else None
        receptor_rfc = receptor.get("Rfc") if receptor is not None else None
        fecha = root.get("Fecha")
    has_tfd = root.find(f".//{{{TFD_NS}}}TimbreFiscalDigital") is not None
    relacionados = tuple(
        (el.get("UUID") or "").upper()
        for el in root.iterfind(f"{{{CFDI_NS}}}CfdiRelacionados/{{{CFDI_NS}}}CfdiRelacionado")
    )
    return PreCfdi(
        raw=raw, root=root, kind="retencion" if retention else "cfdi",
        key=hashlib.sha256(sello.encode("utf-8")).hexdigest(), sello=sello, fecha=fecha,
        emisor_rfc=emisor_rfc, receptor_rfc=receptor_rfc, has_tfd=has_tfd,
        relacionados=relacionados,
    )


def mexico_now(*, micro: bool = False) -> dt.datetime:
    """Naive Mexico City wall time, as CFDI dates are written."""
    now = dt.datetime.now(MX_TZ).replace(tzinfo=None)
    return now if micro else now.replace(microsecond=0)
