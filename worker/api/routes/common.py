"""What several routes share: documented error responses, id checks."""

from __future__ import annotations

from typing import Any

from worker.api.schemas import ErrorBody
from worker.invoices.validation import check_ids

_DESCRIPTIONS = {
    401: "Missing (`missing_api_key`), unknown or revoked (`invalid_api_key`) API key.",
    403: "The key may not act for this empresaRefId (`forbidden_empresa`).",
    404: "No such invoice (`not_found`).",
    409: "Conflict: the body names the invoice and its state.",
    413: "Over the size limit (`too_large`): checked before the body is read.",
    415: "Content-Type is neither application/xml nor application/json.",
    422: "Refused, with the named reason (intake's reasons, or `invalid_request`).",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorBody, "description": _DESCRIPTIONS[code]} for code in codes}


def check_lookup_ids(empresa_ref_id: str | None, reference: str) -> None:
    """Lookups take the ids intake would store, by intake's own rule (422 otherwise)."""
    check_ids("-" if empresa_ref_id is None else empresa_ref_id, reference, None)
