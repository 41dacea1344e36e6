"""What a Finkok answer or failure means for the pipeline.

Two families:

* business answers come back inside a normal HTTP 200 response (``Incidencias`` on stamp,
  ``CodEstatus``/``EstatusUUID``/``error`` elsewhere). They are data in our result objects;
  :func:`classify` turns a code into a :class:`Kind` (a whole stamp answer is read by
  ``worker.finkok.results.stamp_result_kind``).
* everything else is an exception of ours, never a zeep/requests one:
  :class:`FinkokNotSent` (the request never left: safe to send again),
  :class:`FinkokAmbiguous` (it may have been processed: ask ``stamped`` before stamping
  again), :class:`FinkokFault` (a SOAP fault: Finkok answered with an error instead of a
  result), :class:`FinkokBadResponse` (an answer that is not SOAP, e.g. HTTP 404).

Exceptions carry no envelope, no request body and no password; they are raised without
chaining so no library exception holding the request rides along in ``__context__``.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Literal

from worker.finkok import catalog


class Kind(StrEnum):
    OK = catalog.OK
    ALREADY_STAMPED = catalog.ALREADY_STAMPED  # 307
    NOT_STAMPED = catalog.NOT_STAMPED  # 603
    TRANSIENT = catalog.TRANSIENT  # retry later with the same bytes
    ACCOUNT = catalog.ACCOUNT  # a person must fix the account/credentials/CSD
    FISCAL_DATA = catalog.FISCAL_DATA  # receptor data does not match SAT (CFDI40143-40161)
    PERMANENT = catalog.PERMANENT  # the document or request itself is wrong


_CFDI_CODE = re.compile(r"^CFDI(\d{2})(\d{3})$")

Context = Literal["stamp", "cancel"]


def normalize_code(code: str | int) -> str:
    """'  307 ' -> '307'; 'cfdi40143' -> 'CFDI40143'."""
    return str(code).strip().upper()


def classify(code: str | int, *, context: Context = "stamp") -> Kind:
    """The kind of one Finkok/SAT code. Unknown codes are permanent (never retried blindly)."""
    norm = normalize_code(code)
    if context == "cancel" and norm in catalog.CANCEL_OVERRIDES:
        return Kind(catalog.CANCEL_OVERRIDES[norm])
    if norm in catalog.CODES:
        return Kind(catalog.CODES[norm][1])
    m = _CFDI_CODE.match(norm)
    if m and m.group(1) == "40":
        low, high = catalog.FISCAL_DATA_RANGE
        if low <= int(m.group(1) + m.group(2)) <= high:
            return Kind.FISCAL_DATA
    return Kind.PERMANENT


def message_of(code: str | int) -> str | None:
    """Finkok's message for a code, if we know it."""
    entry = catalog.CODES.get(normalize_code(code))
    return entry[0] if entry else None


def classify_text(text: str) -> Kind | None:
    """Kind of a free-text status (cancel ``CodEstatus``, utilities ``error``), if known.

    A text that is just a code (``CodEstatus`` '708') is classified as that code.
    """
    stripped = text.strip()
    if not stripped:
        return None
    if stripped.isdigit() or _CFDI_CODE.match(stripped.upper()):
        return classify(stripped, context="cancel")
    lowered = stripped.lower()
    for needle, kind in catalog.TEXTS:
        if needle in lowered:
            return Kind(kind)
    return None


# --- exceptions ---------------------------------------------------------------------------


class FinkokError(Exception):
    """Base of every error the Finkok client raises."""

    kind: Kind = Kind.TRANSIENT

    def __init__(self, message: str, *, operation: str = "", url: str = "") -> None:
        super().__init__(message)
        self.operation = operation
        self.url = url


class FinkokTransportError(FinkokError):
    """The HTTP exchange failed."""


class FinkokNotSent(FinkokTransportError):
    """The request never reached Finkok (refused, DNS, connect timeout, TLS handshake)."""


class FinkokAmbiguous(FinkokTransportError):
    """The request may have been processed: read timeout, reset after sending, HTTP 5xx
    without a SOAP fault, or an unreadable answer. Ask ``stamped`` before a new ``stamp``."""

    def __init__(
        self, message: str, *, operation: str = "", url: str = "", status: int | None = None
    ) -> None:
        super().__init__(message, operation=operation, url=url)
        self.status = status


class FinkokFault(FinkokError):
    """Finkok answered with a SOAP fault (HTTP 500, ``senv:Server``): transient."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None,
        fault_message: str = "",
        operation: str = "",
        url: str = "",
    ) -> None:
        super().__init__(message, operation=operation, url=url)
        self.code = code
        self.fault_message = fault_message or message  # Finkok's faultstring alone


class FinkokBadResponse(FinkokError):
    """Finkok (or whatever is at the URL) answered, but not with SOAP: e.g. 404 or 401.

    Usually a wrong base URL or a proxy in the way: a person has to look.
    """

    kind = Kind.ACCOUNT

    def __init__(self, message: str, *, status: int, operation: str = "", url: str = "") -> None:
        super().__init__(message, operation=operation, url=url)
        self.status = status

