"""One error envelope for every refusal: ``{"error": {"reason": ..., "message": ...}}``.

``reason`` is a stable code a client can branch on (intake's reasons, plus the few the
HTTP layer adds); ``message`` is for people. Intake's own refusals map to 422, except
``too_large`` (413, like the size check done before the body is read).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from worker.invoices.intake import InvoiceConflict, InvoiceRefused

log = logging.getLogger(__name__)


class ApiError(Exception):
    """Raised by routes and dependencies; rendered as the envelope with ``status``."""

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.headers = headers
        self.extra = extra


def error_body(reason: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"reason": reason, "message": message, **extra}}


def error_response(status: int, reason: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse(error_body(reason, message, **extra), status_code=status)


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    response = error_response(exc.status, exc.reason, exc.message, **exc.extra)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def _refused(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InvoiceRefused)
    status = 413 if exc.reason == "too_large" else 422
    return error_response(status, exc.reason, exc.message)


async def _conflict(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InvoiceConflict)
    return error_response(409, "conflict", str(exc), invoiceId=exc.invoice_id, state=exc.state)


async def _invalid_request(_: Request, exc: Exception) -> JSONResponse:
    """Malformed parameters: name where and what, never echo the input back."""
    assert isinstance(exc, RequestValidationError)
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return error_response(422, "invalid_request", "; ".join(parts) or "invalid request")


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    reasons = {404: "not_found", 405: "method_not_allowed"}
    response = error_response(
        exc.status_code, reasons.get(exc.status_code, "http_error"), str(exc.detail)
    )
    if exc.headers:
        response.headers.update(exc.headers)
    return response


RETRY_AFTER_S = 10


async def _internal(_: Request, exc: Exception) -> JSONResponse:
    if is_unavailable(exc):
        # The database (or the broker) is down: nothing was stored, try again later.
        log.error("API: a dependency is unavailable: %s", type(exc).__name__)
        return unavailable_response()
    log.error("unhandled %s in the API", type(exc).__name__)
    return error_response(500, "internal", "internal error; the request was logged")


def unavailable_response() -> JSONResponse:
    response = error_response(503, "unavailable", "the service cannot store or read invoices "
                              "right now (its database is unreachable); nothing was stored: "
                              f"try again in {RETRY_AFTER_S} s")
    response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


def is_unavailable(exc: BaseException) -> bool:
    """A connection-level failure of the database or the broker (not a bug of ours)."""
    from sqlalchemy.exc import DBAPIError, OperationalError, TimeoutError

    if isinstance(exc, (OperationalError, TimeoutError)):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    name = type(exc).__name__
    if type(exc).__module__.split(".")[0] in ("kombu", "amqp", "redis"):
        return "Operational" in name or "Connection" in name
    return False


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(InvoiceRefused, _refused)
    app.add_exception_handler(InvoiceConflict, _conflict)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _internal)
