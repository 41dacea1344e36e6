"""The request and response shapes of the API (they make the OpenAPI contract)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ErrorDetail(BaseModel):
    reason: str = Field(description="Stable code: intake's reason (empty, not_cfdi40, ...) or "
                        "missing_api_key, invalid_api_key, forbidden_empresa, conflict, "
                        "too_large, not_found, not_stamped, unsupported_media_type, invalid_request.")
    message: str
    invoiceId: str | None = Field(None, description="On a conflict / not_stamped: the invoice.")
    state: str | None = Field(None, description="On a conflict / not_stamped: its state.")
    empresaRefId: str | None = Field(None, description="On forbidden_empresa: the empresaRefId.")


class ErrorBody(BaseModel):
    error: ErrorDetail


class SubmitJson(BaseModel):
    """`POST /v1/invoices` with `Content-Type: application/json`."""

    model_config = ConfigDict(extra="forbid")

    empresaRefId: str
    reference: str = Field(description="The BDC payment reference.")
    pedidoga: str | None = None
    xml: str = Field(description="The sealed CFDI 4.0, exact bytes, standard base64.")
    replace: bool | None = Field(
        None, description="Replace the XML of a rejected or failed invoice."
    )
    reason: str | None = Field(None, max_length=500, description="Why (audit log, on replace).")


class SubmitResponse(BaseModel):
    id: str
    outcome: Literal["created", "existing", "replaced"]
    state: str
    published: bool = Field(description="Whether the stamp task was published now (if not, the "
                            "sweeper publishes it).")


class InvoiceError(BaseModel):
    code: str | None
    message: str | None
    kind: str | None


class SifDelivery(BaseModel):
    """The latest outcome notification to SIF for the invoice."""

    status: str = Field(description="OK or NOK")
    state: str = Field(description="queued, sending, retry_wait, delivered or failed")
    result: str | None
    attempts: int
    lastStatusCode: int | None
    deliveredAt: datetime | None
    createdAt: datetime


class InvoiceView(BaseModel):
    id: str
    empresaRefId: str
    reference: str
    pedidoga: str | None
    state: str = Field(description="received, stamping, retry_wait, pending, stamped, "
                       "rejected or failed")
    satUuid: str | None
    fechaTimbrado: str | None
    satStatus: str | None
    xmlVersion: int
    stampAttempts: int
    errorKind: str | None
    errors: list[InvoiceError]
    sif: SifDelivery | None
    createdAt: datetime
    updatedAt: datetime
    stateChangedAt: datetime
    stampedAt: datetime | None


class InvoiceList(BaseModel):
    items: list[InvoiceView]


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"]
    checks: dict[str, str] = Field(description='Per dependency: "ok" or "down (<error>)".')
