"""The empresaRefId rule every door shares: it must be one URL path segment.

SIF is called at ``PUT {base}/empresas/{empresaRefId}/documents/billing/status``, so an
empresaRefId that is not a single path segment (``..``, ``a/b``, ``a\\b``, control
characters) could never be reported. Intake (CLI, HTTP, broker), ``billing api-keys
create`` and the SIF client all ask ``segment_problem``: refused at the door, not found
out at the end.
"""

from __future__ import annotations


def segment_problem(value: str) -> str | None:
    """Why ``value`` is not a single URL path segment, or None when it is one."""
    if not isinstance(value, str) or not value.strip():
        return "is empty"
    if any(ch in value for ch in "/\\") or value in (".", ".."):
        return "is not a single URL path segment (no '/', '\\', '.' or '..')"
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        return "contains control characters"
    return None
