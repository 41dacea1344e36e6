"""Reading invoices: state, SAT data, errors, SIF delivery; the stamped XML and its PDF."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from worker.api.auth import require_empresa, require_key
from worker.api.errors import ApiError
from worker.api.keys import Principal
from worker.api.routes.common import check_lookup_ids, error_responses
from worker.api.schemas import InvoiceList, InvoiceView
from worker.api.services import services_of
from worker.api.views import find_invoices, load_invoice, view_invoice
from worker.db.models import Invoice

router = APIRouter(tags=["invoices"])

InvoiceId = Path(description="The invoice id returned by POST /v1/invoices.")


async def _readable(request: Request, principal: Principal, invoice_id: str) -> Invoice:
    invoice = await run_in_threadpool(load_invoice, services_of(request).sessions, invoice_id)
    if invoice is None or not principal.allows(invoice.empresa_ref_id):
        # Another empresa's invoice is not ours to confirm exists: the same 404 as none.
        raise ApiError(404, "not_found", f"no invoice {invoice_id!r}")
    return invoice


def _stamped(invoice: Invoice) -> bytes:
    if invoice.stamped_xml is None:
        raise ApiError(
            409, "not_stamped",
            f"invoice {invoice.id} is {invoice.state}: it has no stamped XML yet",
            invoiceId=invoice.id, state=invoice.state,
        )
    return invoice.stamped_xml


def _filename(invoice: Invoice, ext: str) -> dict[str, str]:
    return {"Content-Disposition": f'inline; filename="{invoice.sat_uuid or invoice.id}.{ext}"'}


@router.get(
    "/v1/invoices/{invoice_id}",
    name="get_invoice",
    response_model=InvoiceView,
    summary="One invoice: state, SAT UUID, errors, SIF delivery",
    responses=error_responses(401, 403, 404),
)
async def get_invoice(
    request: Request, invoice_id: str = InvoiceId, principal: Principal = Depends(require_key)
) -> InvoiceView:
    invoice = await _readable(request, principal, invoice_id)
    return await run_in_threadpool(view_invoice, services_of(request).sessions, invoice)


@router.get(
    "/v1/invoices",
    response_model=InvoiceList,
    summary="Find invoices by reference (and empresaRefId)",
    description="Without `empresaRefId`: every empresaRefId the key may read.",
    responses=error_responses(401, 403, 422),
)
async def list_invoices(
    request: Request,
    reference: str = Query(description="The BDC payment reference."),
    empresaRefId: str | None = Query(None, description="Only this empresaRefId."),
    principal: Principal = Depends(require_key),
) -> InvoiceList:
    check_lookup_ids(empresaRefId, reference)
    scope = principal.empresa_ref_ids
    if empresaRefId is not None:
        require_empresa(principal, empresaRefId, "read")
        scope = [empresaRefId]
    items = await run_in_threadpool(find_invoices, services_of(request).sessions, reference, scope)
    return InvoiceList(items=items)


@router.get(
    "/v1/invoices/{invoice_id}/xml",
    response_class=Response,
    summary="The stamped XML (Finkok's exact text)",
    responses={
        200: {"content": {"application/xml": {"schema": {"type": "string"}}},
              "description": "The stamped CFDI."},
        **error_responses(401, 403, 404, 409),
    },
)
async def get_invoice_xml(
    request: Request, invoice_id: str = InvoiceId, principal: Principal = Depends(require_key)
) -> Response:
    invoice = await _readable(request, principal, invoice_id)
    return Response(_stamped(invoice), media_type="application/xml", headers=_filename(invoice, "xml"))


@router.get(
    "/v1/invoices/{invoice_id}/pdf",
    response_class=Response,
    summary="The PDF representation of the stamped CFDI",
    responses={
        200: {"content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}},
              "description": "The PDF."},
        **error_responses(401, 403, 404, 409),
    },
)
async def get_invoice_pdf(
    request: Request, invoice_id: str = InvoiceId, principal: Principal = Depends(require_key)
) -> Response:
    invoice = await _readable(request, principal, invoice_id)
    stamped = _stamped(invoice)
    from worker.cfdi.pdf import render_pdf  # fonts and images: loaded on first use

    emisores = services_of(request).settings.pdf_emisores
    pdf = await run_in_threadpool(render_pdf, stamped, emisores)
    return Response(pdf, media_type="application/pdf", headers=_filename(invoice, "pdf"))
