"""`POST /v1/invoices`: hand one sealed CFDI to intake (the same `submit` as the CLI).

Two ways to send it:

* ``Content-Type: application/xml``: the body is the exact sealed bytes; the ids come as
  query parameters (``empresaRefId``, ``reference``, ``pedidoga``, ``replace``, ``reason``)
  or headers (``X-Empresa-Ref-Id``, ``X-Reference``, ``X-Pedidoga``, ``X-Replace``,
  ``X-Reason``).
* ``Content-Type: application/json``: ``{"empresaRefId", "reference", "pedidoga"?,
  "xml": <base64>, "replace"?, "reason"?}``.

An id given in two places must be the same in both. Intake validates everything else.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from worker.api.auth import require_empresa, require_key
from worker.api.errors import ApiError
from worker.api.keys import Principal
from worker.api.routes.common import error_responses
from worker.api.schemas import SubmitJson, SubmitResponse
from worker.api.services import services_of
from worker.invoices.intake import submit

router = APIRouter(tags=["invoices"])
T = TypeVar("T")

XML_TYPES = ("application/xml", "text/xml")
JSON_TYPE = "application/json"

_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/xml": {
            "schema": {"type": "string", "format": "binary"},
            "example": '<?xml version="1.0" encoding="UTF-8"?><cfdi:Comprobante Version="4.0" ...',
        },
        JSON_TYPE: {"schema": SubmitJson.model_json_schema()},
    },
}


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


@router.post(
    "/v1/invoices",
    status_code=201,
    response_model=SubmitResponse,
    summary="Submit a sealed CFDI 4.0 for stamping",
    description=(
        "201 (with `Location`) for a new invoice; 200 for the same bytes again (`existing`) "
        "or for a replaced XML (`replaced`)."
    ),
    responses={
        201: {
            "description": "A new invoice, stored and queued for stamping.",
            "headers": {"Location": {"description": "/v1/invoices/{id}", "schema": {"type": "string"}}},
        },
        200: {"model": SubmitResponse, "description": "Resubmission (idempotent) or replace."},
        **error_responses(401, 403, 409, 413, 415, 422),
    },
    openapi_extra={"requestBody": _REQUEST_BODY},
)
async def submit_invoice(
    request: Request,
    response: Response,
    principal: Principal = Depends(require_key),
    empresaRefId: str | None = Query(None, description="XML body: the empresaRefId."),
    reference: str | None = Query(None, description="XML body: the BDC payment reference."),
    pedidoga: str | None = Query(None, description="XML body: our folio (optional)."),
    replace: bool | None = Query(None, description="Replace a rejected/failed invoice's XML."),
    reason: str | None = Query(None, max_length=500, description="Why (audit log, on replace)."),
    h_empresa: str | None = Header(None, alias="X-Empresa-Ref-Id"),
    h_reference: str | None = Header(None, alias="X-Reference"),
    h_pedidoga: str | None = Header(None, alias="X-Pedidoga"),
    h_replace: bool | None = Header(None, alias="X-Replace"),
    h_reason: str | None = Header(None, alias="X-Reason", max_length=500),
) -> SubmitResponse:
    kind = media_type(request)
    body = await request.body()
    if kind in XML_TYPES:
        doc: SubmitJson | None = None
        xml = body
    elif kind == JSON_TYPE:
        doc = _parse_json(body)
        xml = _decode_base64(doc.xml)
    else:
        raise ApiError(
            415, "unsupported_media_type",
            f"Content-Type {kind or '(none)'!r}: send application/xml or application/json",
        )

    empresa = _one("empresaRefId", empresaRefId, h_empresa, doc.empresaRefId if doc else None)
    ref = _one("reference", reference, h_reference, doc.reference if doc else None)
    folio = _one("pedidoga", pedidoga, h_pedidoga, doc.pedidoga if doc else None)
    do_replace = _one("replace", replace, h_replace, doc.replace if doc else None)
    why = _one("reason", reason, h_reason, doc.reason if doc else None)
    if empresa:  # missing: intake refuses it (missing_id)
        require_empresa(principal, empresa, "submit")

    services = services_of(request)
    result = await run_in_threadpool(
        submit,
        services.sessions,
        xml,
        empresa_ref_id=empresa or "",  # empty: intake refuses it (missing_id)
        reference=ref or "",
        pedidoga=folio,
        replace=bool(do_replace),
        max_xml_bytes=services.settings.max_xml_bytes,
        publish=services.publish,
        actor=f"api-key:{principal.prefix}",
        reason=why,
        checks=services.settings.intake_checks,
    )
    if result.outcome == "created":
        response.headers["Location"] = str(request.url_for("get_invoice", invoice_id=result.invoice_id).path)
    else:
        response.status_code = 200
    return SubmitResponse(
        id=result.invoice_id, outcome=result.outcome, state=result.state, published=result.published
    )


def _parse_json(body: bytes) -> SubmitJson:
    try:
        return SubmitJson.model_validate_json(body)
    except ValidationError as exc:
        parts = [
            f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in exc.errors()
        ]
        raise ApiError(422, "invalid_request", "; ".join(parts)) from None


def _decode_base64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(422, "invalid_request", "xml: not valid base64") from None


def _one(name: str, *values: T | None) -> T | None:
    """The value of an id given as query parameter, header or JSON field (at most one)."""
    given = {v for v in values if v is not None}
    if len(given) > 1:
        raise ApiError(422, "invalid_request", f"{name} is given more than once with different values")
    return next(iter(given), None)
