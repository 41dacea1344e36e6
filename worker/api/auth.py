"""Who may call: an API key in ``X-API-Key`` or ``Authorization: Bearer``.

401 when the key is missing, unknown or revoked; 403 when the key may not act for the
empresaRefId at hand (the message names it). The caller's key id and prefix are left in
the request state for the access log, never the key itself.
"""

from __future__ import annotations

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from worker.api.errors import ApiError
from worker.api.keys import Principal, authenticate
from worker.api.services import services_of

_api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, scheme_name="ApiKey",
    description="The API key (`billing api-keys create`).",
)
_bearer = HTTPBearer(
    auto_error=False, scheme_name="Bearer", description="The API key as a bearer token."
)
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="billing"'}


async def require_key(
    request: Request,
    api_key: str | None = Security(_api_key_header),
    bearer: HTTPAuthorizationCredentials | None = Security(_bearer),
) -> Principal:
    gated = request.scope.get("state", {}).get("principal")
    if isinstance(gated, Principal):  # the door (worker.api.limits) authenticated it already
        request.state.api_key = gated.label
        return gated
    presented = api_key or (bearer.credentials if bearer is not None else None)
    if not presented:
        raise ApiError(
            401, "missing_api_key",
            "missing API key: send it in X-API-Key or Authorization: Bearer",
            headers=_CHALLENGE,
        )
    sessions = services_of(request).sessions
    principal = await run_in_threadpool(authenticate, sessions, presented)
    if principal is None:
        raise ApiError(401, "invalid_api_key", "invalid or revoked API key", headers=_CHALLENGE)
    request.state.api_key = principal.label
    return principal


def require_empresa(principal: Principal, empresa_ref_id: str, action: str) -> None:
    """403 unless the key may ``action`` ("submit" / "read") for this empresaRefId."""
    if not principal.allows(empresa_ref_id):
        raise ApiError(
            403, "forbidden_empresa",
            f"this API key ({principal.prefix}) may not {action} invoices for empresaRefId "
            f"{empresa_ref_id!r}",
            empresaRefId=empresa_ref_id,
        )
