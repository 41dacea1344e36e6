"""The bodies we PUT to SIF: OK (stamped) and NOK (could not be stamped).

Decisions from the spec: ``type`` is ``S`` (configurable), ``errorDatosFiscales`` is the
number 0/1, and a NOK's ``folio`` is our own invoice id (no SAT UUID exists).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

EN_DASH = "\u2013"
FISCAL_DATA_KIND = "fiscal_data"
DATOS_FISCALES_KEYS = ("rfc", "usoCfdi", "regimenFiscal", "codigoPostal")


class InvoiceFields(Protocol):
    """What a body needs from the invoice (an ``Invoice`` row, or the notifier's read)."""

    @property
    def id(self) -> str: ...
    @property
    def reference(self) -> str: ...
    @property
    def pedidoga(self) -> str | None: ...
    @property
    def sat_uuid(self) -> str | None: ...
    @property
    def stamped_xml(self) -> bytes | None: ...
    @property
    def state(self) -> str: ...
    @property
    def error_kind(self) -> str | None: ...
    @property
    def errors(self) -> list[dict[str, str]] | None: ...


class NotificationFields(Protocol):
    """What a body needs from the outbox row."""

    @property
    def id(self) -> str: ...
    @property
    def status(self) -> str: ...


class PayloadError(ValueError):
    """The rows do not hold what a SIF body needs (a bug or corrupt data, not a SIF fault)."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _datos_fiscales(values: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key in DATOS_FISCALES_KEYS:
        value = values.get(key)
        # A number here would already have lost a leading zero (codigoPostal 01000).
        if not isinstance(value, str) or not value:
            raise PayloadError(f"datosFiscales.{key} must be a non-empty string, got {value!r}")
        out[key] = value
    return out


def build_ok(
    *,
    reference: str,
    sat_uuid: str,
    pedidoga: str | None,
    stamped_xml: bytes,
    pdf: bytes,
    datos_fiscales: Mapping[str, Any],
    type_: str = "S",
) -> dict[str, Any]:
    """An OK body: xml is base64 of the exact stamped bytes, folio is the SAT UUID."""
    if not isinstance(stamped_xml, (bytes, bytearray)) or not stamped_xml:
        raise PayloadError("stamped_xml must be the non-empty stamped bytes")
    if not isinstance(pdf, (bytes, bytearray)) or not pdf:
        raise PayloadError("pdf must be non-empty bytes")
    body: dict[str, Any] = {
        "reference": reference,
        "status": "OK",
        "folio": sat_uuid,
        "type": type_,
    }
    if pedidoga is not None:
        body["pedidoga"] = pedidoga
    body["pdf"] = _b64(bytes(pdf))
    body["xml"] = _b64(bytes(stamped_xml))
    body["datosFiscales"] = _datos_fiscales(datos_fiscales)
    return body


def format_error(error: Mapping[str, Any]) -> str:
    """'CODE – message' (en dash); just the one that exists when the other is empty."""
    code = str(error.get("code") or "").strip()
    message = str(error.get("message") or "").strip()
    if code and message:
        return f"{code} {EN_DASH} {message}"
    if code or message:
        return code or message
    raise PayloadError(f"an error needs a code or a message, got {dict(error)!r}")


def build_nok(
    *,
    reference: str,
    invoice_id: str,
    pedidoga: str | None,
    errors: Sequence[Mapping[str, Any]],
    type_: str = "S",
) -> dict[str, Any]:
    """A NOK body: one string per error; errorDatosFiscales 1 iff an error is fiscal_data."""
    if not errors:
        raise PayloadError("a NOK needs at least one error to report")
    body: dict[str, Any] = {
        "reference": reference,
        "status": "NOK",
        "folio": invoice_id,
        "type": type_,
    }
    if pedidoga is not None:
        body["pedidoga"] = pedidoga
    body["error"] = [format_error(e) for e in errors]
    body["errorDatosFiscales"] = int(any(e.get("kind") == FISCAL_DATA_KIND for e in errors))
    return body


def _nok_errors(invoice: InvoiceFields) -> list[dict[str, Any]]:
    """The invoice's recorded errors; a failed invoice without any still needs a reason."""
    if invoice.errors:
        return [dict(e) for e in invoice.errors]
    kind = invoice.error_kind or "unknown"
    return [
        {
            "code": "",
            "message": f"La factura no pudo timbrarse (estado {invoice.state}, causa {kind})",
            "kind": kind,
        }
    ]


def body_for(invoice: InvoiceFields, notification: NotificationFields, *,
             type_: str = "S") -> dict[str, Any]:
    """The body for one outbox row, built from the database rows alone."""
    if notification.status == "OK":
        if not invoice.stamped_xml or not invoice.sat_uuid:
            raise PayloadError(
                f"invoice {invoice.id} has an OK notification but no stamped XML/SAT UUID"
            )
        # Imported here so the NOK path and the rest of the package work without them.
        from worker.cfdi.extract import extract, fiscal_data_of
        from worker.cfdi.pdf import render_cfdi
        from worker.settings import get_settings

        stamped = bytes(invoice.stamped_xml)
        cfdi = extract(stamped)  # parsed once, for the PDF and datosFiscales
        return build_ok(
            reference=invoice.reference,
            sat_uuid=invoice.sat_uuid,
            pedidoga=invoice.pedidoga,
            stamped_xml=stamped,
            pdf=render_cfdi(cfdi, get_settings().pdf_emisores),  # the emisor's logo and address
            datos_fiscales=fiscal_data_of(cfdi.receptor),
            type_=type_,
        )
    if notification.status == "NOK":
        return build_nok(
            reference=invoice.reference,
            invoice_id=invoice.id,
            pedidoga=invoice.pedidoga,
            errors=_nok_errors(invoice),
            type_=type_,
        )
    raise PayloadError(f"notification {notification.id} has status {notification.status!r}")
