"""What a PAC would refuse in a sealed CFDI, checked before it is sent: one definition
for intake (every entry point) and the local Finkok sandbox, so demo and tests agree.

Each failed check raises :class:`PreflightError` naming the SAT/Finkok code it avoids:

* ``302``/``303``: the Sello does not verify against the Certificado over the cadena
  original (or the Emisor is not the certificate's RFC). Where the cadena cannot be built
  here (a SAT complement whose rules are not written, ``UnsupportedNodeError``) the
  check is **skipped and reported** in ``Preflight.skipped``, never a refusal;
* ``305``: ``Fecha`` outside the certificate's validity;
* ``401``: ``Fecha`` older than SAT's 72-hour window, or ahead of now by more than
  ``FUTURE_TOLERANCE`` (Mexico City wall time; the tolerance also covers Quintana Roo,
  one hour ahead, and clock skew);
* ``CFDI40157``-``CFDI40161``: RegimenFiscalReceptor / UsoCFDI not in their catalogs, or
  not compatible with each other and with the receptor's person type (13-character RFC:
  física, 12: moral; the generic RFCs take 616).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from cryptography import x509
from lxml import etree

from worker.cfdi.catalogs import (
    GENERIC_REGIMEN,
    GENERIC_RFCS,
    REGIMEN_PERSONA,
    USO_CFDI_RULES,
)
from worker.cfdi.sealing import (
    CadenaUnavailable,
    SealError,
    certificate_of,
    verify_seal,
)
from worker.cfdi.xml import CFDI_NS

try:
    from zoneinfo import ZoneInfo

    MX_TZ: dt.tzinfo = ZoneInfo("America/Mexico_City")
except Exception:  # pragma: no cover - no tz database: Mexico City has had no DST since 2022
    MX_TZ = dt.timezone(dt.timedelta(hours=-6))

MAX_AGE_H = 72.0
FUTURE_TOLERANCE = dt.timedelta(hours=1, minutes=10)


class PreflightError(ValueError):
    """A PAC would refuse the document: ``code`` is what it would answer, ``reason`` our name."""

    def __init__(self, code: str, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message


@dataclass
class Preflight:
    """What ran: the checks skipped (and why), for the record."""

    skipped: dict[str, str] = field(default_factory=dict)


def preflight(root: etree._Element, *, check_seal: bool = True, max_age_h: float = MAX_AGE_H,
              now: dt.datetime | None = None) -> Preflight:
    """Run every check on a parsed cfdi:Comprobante; raise the first PreflightError."""
    report = Preflight()
    if check_seal:
        try:
            verify_seal(root)
        except CadenaUnavailable as exc:
            report.skipped["seal"] = str(exc)
        except SealError as exc:
            raise PreflightError(exc.code, "bad_seal", f"{exc} (Finkok would answer {exc.code})") from None
    fecha = parse_fecha(root.get("Fecha"))
    check_fecha(fecha, max_age_h=max_age_h, now=now)
    check_certificate_at(root, fecha)
    check_receptor(root)
    return report


def parse_fecha(value: str | None) -> dt.datetime:
    """Fecha as naive Mexico City wall time (how CFDI writes it); 401 when it is no date."""
    try:
        when = dt.datetime.fromisoformat((value or "").strip())
    except ValueError:
        raise PreflightError("401", "fecha_out_of_range",
                             f"Fecha {value!r} is not a date (Finkok would answer 401)") from None
    if when.tzinfo is not None:
        when = when.astimezone(MX_TZ).replace(tzinfo=None)
    return when


def mexico_now() -> dt.datetime:
    return dt.datetime.now(MX_TZ).replace(tzinfo=None, microsecond=0)


def check_fecha(fecha: dt.datetime, *, max_age_h: float = MAX_AGE_H,
                now: dt.datetime | None = None) -> None:
    now = now or mexico_now()
    if fecha < now - dt.timedelta(hours=max_age_h):
        raise PreflightError("401", "fecha_out_of_range", f"Fecha {fecha.isoformat()} is more than "
                             f"{max_age_h:g} h old (SAT's window; Finkok would answer 401)")
    if fecha > now + FUTURE_TOLERANCE:
        raise PreflightError("401", "fecha_out_of_range", f"Fecha {fecha.isoformat()} is in the future (now "
                             f"{now.isoformat()} Mexico City; Finkok would answer 401)")


def check_certificate_at(root: etree._Element, fecha: dt.datetime) -> None:
    try:
        cert = certificate_of(root)
    except SealError as exc:
        raise PreflightError("302", "bad_seal", f"{exc} (Finkok would answer 302)") from None
    at = fecha.replace(tzinfo=MX_TZ)
    start, end = _validity(cert)
    if not start <= at <= end:
        raise PreflightError(
            "305", "certificate_not_valid",
            f"Fecha {fecha.isoformat()} is outside the certificate's validity "
            f"({start:%Y-%m-%d} to {end:%Y-%m-%d}; Finkok would answer 305)")


def _validity(cert: x509.Certificate) -> tuple[dt.datetime, dt.datetime]:
    return cert.not_valid_before_utc, cert.not_valid_after_utc


def check_receptor(root: etree._Element) -> None:
    receptor = root.find(f"{{{CFDI_NS}}}Receptor")
    if receptor is None:
        return  # intake's shape checks name it
    rfc = receptor.get("Rfc", "")
    regimen = receptor.get("RegimenFiscalReceptor", "")
    uso = receptor.get("UsoCFDI", "")
    persona = "F" if len(rfc) == 13 else "M"
    who = "persona física" if persona == "F" else "persona moral"

    def refuse(code: str, text: str) -> PreflightError:
        return PreflightError(code, "receptor_rules", f"{text} (Finkok would answer {code})")

    if regimen not in REGIMEN_PERSONA:
        raise refuse("CFDI40157", f"RegimenFiscalReceptor {regimen!r} is not in c_RegimenFiscal")
    if rfc in GENERIC_RFCS and regimen != GENERIC_REGIMEN:
        raise refuse("CFDI40159", f"RegimenFiscalReceptor {regimen} does not go with the generic RFC "
                     f"{rfc}: it takes {GENERIC_REGIMEN}")
    if persona not in REGIMEN_PERSONA[regimen]:
        raise refuse("CFDI40158", f"RegimenFiscalReceptor {regimen} is not for a {who} (RFC {rfc})")
    rule = USO_CFDI_RULES.get(uso)
    if rule is None:
        raise refuse("CFDI40160", f"UsoCFDI {uso!r} is not in c_UsoCFDI")
    personas, regimenes = rule
    if persona not in personas or regimen not in regimenes:
        raise refuse("CFDI40161", f"UsoCFDI {uso} does not go with RegimenFiscalReceptor {regimen} "
                     f"for a {who}")
