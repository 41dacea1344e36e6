"""HTTP for the Finkok client: zeep's transport over a urllib3 connection pool, with
timeouts and no hidden retries, and the translation of every transport/zeep failure into
our exceptions.

The split that matters for "no double stamp": a request that certainly never reached
Finkok (:class:`FinkokNotSent`) may simply be sent again; one that may have been processed
(:class:`FinkokAmbiguous`) must be followed by ``stamped`` before any new ``stamp``.

Why urllib3 and not zeep's default ``requests.Session``: requests is a layer over urllib3
whose per-request work (merging session settings, hooks, cookies, preparing the body,
building its Response) cost ~1.3 ms of CPU per stamp call here, on top of urllib3's own
~0.6 ms (measured: a 60 KB POST to a local sandbox, client thread CPU, requests 1.9-2.2 ms,
urllib3 0.60-0.64 ms). The pool keeps the connections alive the same way; zeep needs only
the answer's status, headers and body (``Answer``).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import urllib3
import zeep.exceptions
from lxml import etree
from urllib3.exceptions import (
    ConnectTimeoutError,
    NameResolutionError,
    NewConnectionError,
    ReadTimeoutError,
)
from zeep.transports import Transport

from worker.finkok.errors import (
    FinkokAmbiguous,
    FinkokBadResponse,
    FinkokError,
    FinkokFault,
    FinkokNotSent,
)
from worker.redaction import redact

# What requests sent with every call through zeep's session (zeep sets the User-Agent).
_HEADERS = {"User-Agent": f"Zeep/{zeep.__version__} (www.python-zeep.org)",
            "Accept-Encoding": "gzip, deflate", "Accept": "*/*"}


# Never retry, never follow a redirect (built once: urllib3 converts ``retries=False`` into
# a new ``Retry`` on every call).
_NO_RETRIES = urllib3.Retry(total=False, redirect=0)


def _text(data: bytes | str) -> str:
    return data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data


@dataclass(frozen=True, slots=True)
class Answer:
    """What zeep reads of an HTTP answer (``SoapBinding.process_reply``)."""

    status_code: int
    content: bytes
    headers: Any  # urllib3's HTTPHeaderDict: case-insensitive
    encoding: str | None = None


class StatusTransport(Transport):
    """zeep's transport posting through one urllib3 pool, remembering (per thread) the HTTP
    status of the last POST.

    zeep turns a 5xx answer whose body is well-formed XML but not a SOAP fault (an HTML
    error page, say) into ``Fault("Unknown fault occured")``; the status tells it apart.
    Never retries and never follows a redirect: retrying a POST is the pipeline's decision.
    (zeep's own requests session is left for what zeep loads by URL; the WSDLs are local.)
    """

    def __init__(self, *, connect_timeout_s: float, read_timeout_s: float,
                 pool_maxsize: int = 10) -> None:
        # zeep's own default has no operation timeout at all; ours, (connect, read), is
        # the pool's for every POST (``timeout`` is for what zeep loads by URL)
        super().__init__(timeout=connect_timeout_s + read_timeout_s,  # type: ignore[no-untyped-call]
                         operation_timeout=(connect_timeout_s, read_timeout_s))
        self.session.trust_env = False  # no proxy/netrc surprises from the environment
        self._pool = urllib3.PoolManager(
            num_pools=4, maxsize=pool_maxsize, block=False, retries=_NO_RETRIES,
            timeout=urllib3.Timeout(connect=connect_timeout_s, read=read_timeout_s))
        self._local = threading.local()

    def post(self, address: str, message: bytes, headers: dict[str, str]) -> Answer:
        """POST one envelope. At DEBUG, logs the envelope and the answer as zeep's own
        transport does, on its logger (``zeep.transports``, redacted: worker.redaction)."""
        debug = self.logger.isEnabledFor(logging.DEBUG)
        if debug:
            self.logger.debug("HTTP Post to %s:\n%s", address, _text(message))
        self._local.status = None
        response = self._pool.urlopen("POST", address, body=message,
                                      headers={**_HEADERS, **headers}, redirect=False)
        self._local.status = response.status
        if debug:
            self.logger.debug("HTTP Response from %s (status: %d):\n%s", address,
                              response.status, _text(response.data))
        return Answer(response.status, response.data, response.headers)

    @property
    def last_status(self) -> int | None:
        return getattr(self._local, "status", None)

    def close(self) -> None:
        self._pool.clear()
        self.session.close()


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
    if isinstance(exc, ConnectTimeoutError) and not isinstance(exc, NewConnectionError):
        return FinkokNotSent(f"{where}: connect timeout (not sent)", operation=operation, url=url)
    if isinstance(exc, ReadTimeoutError):
        return FinkokAmbiguous(
            f"{where}: no answer within {read_timeout_s:g} s (the request may have been processed)",
            operation=operation, url=url,
        )
    if isinstance(exc, (urllib3.exceptions.HTTPError, OSError)) and not isinstance(
        exc, urllib3.exceptions.SSLError
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
    if isinstance(exc, urllib3.exceptions.HTTPError):
        return FinkokAmbiguous(
            f"{where}: {type(exc).__name__} (the request may have been processed)",
            operation=operation, url=url,
        )
    return FinkokAmbiguous(
        f"{where}: unexpected {type(exc).__name__} (the request may have been processed)",
        operation=operation, url=url,
    )
