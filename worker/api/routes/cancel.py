"""Cancelling an invoice at SAT: ``POST``/``GET /v1/invoices/{id}/cancellation``.

The POST runs the same door as ``billing cancel`` and ``billing.cancel_invoice``
(``worker.cancellations.door``): one set of rules, one idempotency rule (the same request
twice is one cancellation: 201 the first time, 200 after). The key must be allowed for the
invoice's empresaRefId, as for submitting. The audit row's actor is ``api:<key prefix>``.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from worker.api.auth import require_key
from worker.api.errors import ApiError
from worker.api.keys import Principal
from worker.api.routes.common import error_responses
from worker.api.services import services_of
from worker.api.views import load_invoice

router = APIRouter(tags=["cancellations"])
InvoiceId = Path(description="The invoice id returned by POST /v1/invoices.")


class CancellationRequest(BaseModel):
    motivo: Literal["01", "02", "03", "04"] = Field(
        description="SAT's motivo: 01 errors with a relation (needs `substitute`), 02 errors "
        "without one, 03 the operation did not happen, 04 nominative in a global invoice.")
    substitute: str | None = Field(None, max_length=36, description=(
        "Motivo 01 only: the SAT UUID of the stamped invoice of ours that replaces it."))
    reason: str = Field(min_length=1, max_length=500, description="Why (kept in the audit log).")


class CancellationView(BaseModel):
    id: str
    invoiceId: str
    uuid: str
    state: str = Field(description="requested, sending, in_process, cancelled, cancel_rejected, "
                       "cancel_failed, or held (an outage, our credentials or credits: it "
                       "resumes by itself; `errors` says why)")
    motivo: str
    folioSustitucion: str | None
    estatusUuid: str | None = Field(description="Finkok's answer to the request (201, 202, ...)")
    satEstado: str | None
    satEstatusCancelacion: str | None
    hasAcuse: bool
    errors: list[dict[str, str]] | None
    cancelledAt: str | None
    createdAt: str
    updatedAt: str


def _view(sessions, invoice_id: str) -> CancellationView | None:  # type: ignore[no-untyped-def]
    from worker.cancellations.door import cancellation_of, describe

    with sessions() as session:
        row = cancellation_of(session, invoice_id)
        if row is None:
            return None
        data = describe(row)
    return CancellationView(**{k: data[k] for k in CancellationView.model_fields})


async def _allowed(request: Request, principal: Principal, invoice_id: str, action: str) -> None:
    invoice = await run_in_threadpool(load_invoice, services_of(request).sessions, invoice_id)
    if invoice is None or not principal.allows(invoice.empresa_ref_id):
        # Another empresa's invoice is not ours to confirm exists: the same 404 as none.
        raise ApiError(404, "not_found", f"no invoice {invoice_id!r}")


@router.post(
    "/v1/invoices/{invoice_id}/cancellation",
    name="cancel_invoice",
    status_code=201,
    response_model=CancellationView,
    summary="Cancel a stamped invoice at SAT (motivo 01-04)",
    description="201 for a new request; 200 for the same request again (or a new one after a "
    "rejection). Refusals: 404, 409 (`not_stamped`, `conflict`), 422 (`motivo`, "
    "`substitute_missing`, `substitute_unstamped`, `substitute_cancelled`, `no_csd`).",
    responses={**error_responses(401, 403, 404, 409, 422),
               400: {"description": "The body is not JSON."}},
)
async def cancel_invoice(
    request: Request, response: Response, body: CancellationRequest, invoice_id: str = InvoiceId,
    principal: Principal = Depends(require_key),  # noqa: B008  (FastAPI's idiom, as in read.py)
) -> CancellationView:
    from worker.cancellations.door import CancelRefused, request_cancellation

    await _allowed(request, principal, invoice_id, "submit")
    services = services_of(request)
    try:
        out = await run_in_threadpool(
            lambda: request_cancellation(
                services.sessions, services.settings.cancel_csds, invoice_id, motivo=body.motivo,
                substitute=body.substitute, reason=body.reason, actor=f"api:{principal.prefix}"))
    except CancelRefused as exc:
        raise ApiError(exc.status, exc.reason, str(exc), invoiceId=invoice_id) from None
    if out.ring and out.cancellation_id and services.publish is not None:
        from worker.cancellations.tasks import ring_send

        await run_in_threadpool(ring_send, services.celery, out.cancellation_id)
    if out.status != "created":
        response.status_code = 200
    view = await run_in_threadpool(_view, services.sessions, invoice_id)
    assert view is not None
    return view


@router.get(
    "/v1/invoices/{invoice_id}/cancellation",
    name="get_cancellation",
    response_model=CancellationView,
    summary="The invoice's cancellation: its state and SAT's answer",
    responses=error_responses(401, 403, 404),
)
async def get_cancellation(
    request: Request, invoice_id: str = InvoiceId,
    principal: Principal = Depends(require_key),  # noqa: B008
) -> CancellationView:
    await _allowed(request, principal, invoice_id, "read")
    view = await run_in_threadpool(_view, services_of(request).sessions, invoice_id)
    if view is None:
        raise ApiError(404, "not_found", f"invoice {invoice_id} has no cancellation")
    return view
