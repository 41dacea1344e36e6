"""HTTP for the Finkok client: a requests session with timeouts and no hidden retries, and
the translation of every transport/zeep failure into our exceptions.

The split that matters for "no double stamp": a request that certainly never reached
Finkok (:class:`FinkokNotSent`) may simply be sent again; one that may have been processed
(:class:`FinkokAmbiguous`) must be followed by ``stamped`` before any new ``stamp``.
"""

from __future__ import annotations

import threading

import requests
import zeep.exceptions
from lxml import etree
from requests.adapters import HTTPAdapter
from urllib3.exceptions import (
    ConnectTimeoutError,
    NameResolutionError,
    NewConnectionError,
)
from urllib3.util.retry import Retry
from zeep.transports import Transport

from worker.finkok.errors import (
    FinkokAmbiguous,
    FinkokBadResponse,
    FinkokError,
    FinkokFault,
    FinkokNotSent,
)
from worker.redaction import redact


def make_session(pool_maxsize: int = 10) -> requests.Session:
    """A session that never retries on its own: retrying a POST is the pipeline's decision."""
    session = requests.Session()
    adapter = HTTPAdapter(
        pool_connections=4,
        pool_maxsize=pool_maxsize,
        max_retries=Retry(total=0, connect=0, read=0, redirect=0, status=0, other=0),
    )
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.trust_env = False  # no proxy/netrc surprises from the environment
    return session


class StatusTransport(Transport):
    """zeep's transport, remembering (per thread) the HTTP status of the last POST.

    zeep turns a 5xx answer whose body is well-formed XML but not a SOAP fault (an HTML
    error page, say) into ``Fault("Unknown fault occured")``; the status tells it apart.
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]  # zeep's Transport is unannotated
        self._local = threading.local()

    def post(self, address: str, message: bytes, headers: dict[str, str]) -> requests.Response:
        self._local.status = None
        response: requests.Response = super().post(  # type: ignore[no-untyped-call]  # zeep, unannotated
            address, message, headers
        )
        self._local.status = response.status_code
        return response

    @property
    def last_status(self) -> int | None:
        return getattr(self._local, "status", None)


def make_transport(
    session: requests.Session, connect_timeout_s: float, read_timeout_s: float
) -> StatusTransport:
    """zeep's default has no operation timeout at all; ours is (connect, read)."""
    return StatusTransport(
        session=session,
        timeout=connect_timeout_s + read_timeout_s,
        operation_timeout=(connect_timeout_s, read_timeout_s),
    )


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception and everything it wraps (args, .reason, cause, context)."""
    seen: list[BaseException] = []
    stack = [exc]
    while stack:
        current = stack.pop()
        if any(current is s for s in seen):
            continue
        seen.append(current)
        for nxt in (
            getattr(current, "reason", None),
            current.__cause__,
            current.__context__,
            *[a for a in current.args if isinstance(a, BaseException)],
        ):
            if isinstance(nxt, BaseException):
                stack.append(nxt)
    return seen


_NEVER_SENT = (NewConnectionError, NameResolutionError, ConnectTimeoutError, ConnectionRefusedError)


def translate(
    exc: BaseException,
    *,
    operation: str,
    url: str,
    read_timeout_s: float,
    status: int | None = None,
) -> FinkokError:
    """Our exception for a failure of one call. Messages carry no request or response body.

    ``status``: HTTP status of the answer, when one arrived.
    """
    where = f"Finkok {operation} at {url}"
    if (isinstance(exc, zeep.exceptions.Fault) and exc.code is None and status is not None
            and 400 <= status < 500):
        # An HTML-ish page with a client-error status (a proxy, a wrong URL): not Finkok,
        # and nothing was processed.
        return FinkokBadResponse(
            f"{where}: HTTP {status}, not a SOAP answer (check the Finkok URL)",
            status=status, operation=operation, url=url,
        )
    if isinstance(exc, zeep.exceptions.Fault) and exc.code is None and status != 200:
        # Not a SOAP fault at all: zeep's reading of an XML-ish error page.
        return FinkokAmbiguous(
            f"{where}: HTTP {status} without a SOAP fault (the request may have been processed)",
            operation=operation, url=url, status=status,
        )
    if isinstance(exc, zeep.exceptions.Fault):
        message = redact(str(exc.message or "").strip()) or "SOAP fault without a message"
        code = str(exc.code) if exc.code else None
        return FinkokFault(
            f"{where}: SOAP fault {code or ''}: {message}".replace("  ", " "),
            code=code,
            fault_message=message,
            operation=operation,
            url=url,
        )
    if isinstance(exc, zeep.exceptions.TransportError):
        status = int(exc.status_code or 0)
        if status >= 500 or status == 200:
            what = "an unreadable answer" if status == 200 else f"HTTP {status} without a SOAP fault"
            return FinkokAmbiguous(
                f"{where}: {what} (the request may have been processed)",
                operation=operation, url=url, status=status,
            )
        return FinkokBadResponse(
            f"{where}: HTTP {status}, not a SOAP answer (check the Finkok URL)",
            status=status, operation=operation, url=url,
        )
    if isinstance(exc, (zeep.exceptions.XMLSyntaxError, zeep.exceptions.XMLParseError,
                        etree.XMLSyntaxError)):
        return FinkokAmbiguous(
            f"{where}: the answer is not the expected SOAP document "
            "(the request may have been processed)",
            operation=operation, url=url,
        )
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return FinkokNotSent(f"{where}: connect timeout (not sent)", operation=operation, url=url)
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return FinkokAmbiguous(
            f"{where}: no answer within {read_timeout_s:g} s (the request may have been processed)",
            operation=operation, url=url,
        )
    if isinstance(exc, requests.exceptions.ConnectionError) and not isinstance(
        exc, requests.exceptions.SSLError
    ):
        causes = _causes(exc)
        if any(isinstance(c, _NEVER_SENT) for c in causes):
            reason = next((type(c).__name__ for c in causes if isinstance(c, _NEVER_SENT)), "")
            return FinkokNotSent(
                f"{where}: could not connect ({reason}; not sent)", operation=operation, url=url
            )
        return FinkokAmbiguous(
            f"{where}: connection lost after sending (the request may have been processed)",
            operation=operation, url=url,
        )
    if isinstance(exc, requests.exceptions.RequestException):
        return FinkokAmbiguous(
            f"{where}: {type(exc).__name__} (the request may have been processed)",
            operation=operation, url=url,
        )
    return FinkokAmbiguous(
        f"{where}: unexpected {type(exc).__name__} (the request may have been processed)",
        operation=operation, url=url,
    )
