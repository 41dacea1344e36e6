"""Keeps secrets out of log records and error texts: the one redaction module.

What is masked (``redact``):

* every secret this process registered (``register_secret``): the Finkok password, every
  SIF secret; longest first, wherever it appears;
* the content of credential elements in SOAP envelopes (``password``, ``reseller_password``,
  ``passphrase``, ``key``, any prefix), so a password too short to register, or a CSD
  key, is masked in an envelope all the same.

Where: clients register what they hold when they are built, which also attaches one
logging filter to the loggers of the libraries that could print a secret (``install``):
zeep and urllib3 log whole SOAP envelopes at DEBUG (with the password in
``<ns0:password>``); urllib3 2.x (the SIF client's HTTP) logs no request headers, only one
request line per call at DEBUG, but a future version may log more; httpx/httpcore (the
health check's GET of SIF's base URL) do not log request headers either, but httpcore logs
*response* headers at DEBUG, and a proxy or SIF gateway could echo ours back. A logger's
filters only see records created on that very logger, so each known logger name gets the
filter. On top of that, the structured-log processor (``worker.logging``) masks every
record our own handler renders, whichever logger it came from.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable

__all__ = [
    "FINKOK_LOGGERS",
    "HTTP_LOGGERS",
    "MASK",
    "SIF_LOGGERS",
    "WATCHED_LOGGERS",
    "RedactingFilter",
    "install",
    "redact",
    "register_secret",
]

MASK = "********"

# urllib3: both clients' HTTP (Finkok's under zeep, SIF's directly).
HTTP_LOGGERS = (
    "urllib3",
    "urllib3.connectionpool",
    "urllib3.connection",
    "urllib3.poolmanager",
    "urllib3.response",
    "urllib3.util.retry",
)
# zeep (the Finkok client's SOAP envelopes), requests (what zeep loads by URL).
FINKOK_LOGGERS = (
    "zeep",
    "zeep.transports",
    "zeep.wsdl.bindings.soap",
    "zeep.client",
    "zeep.xsd.schema",
    "requests",
)
# httpx/httpcore (the health check's GET of SIF), and ours that log SIF's answers.
SIF_LOGGERS = (
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
    "worker.sif",
    "worker.invoices.notify",
)
WATCHED_LOGGERS = HTTP_LOGGERS + FINKOK_LOGGERS + SIF_LOGGERS

_ELEMENT = re.compile(
    r"(<(?P<p>[\w.-]+:)?(?P<name>password|reseller_password|passphrase|key)(?:\s[^>]*)?>)"
    r"[^<]*"
    r"(</(?P=p)?(?P=name)\s*>)",
    re.IGNORECASE,
)

_longest_first: tuple[str, ...] = ()  # the registered secrets, longest first: "ab" before "a"
_lock = threading.Lock()


def register_secret(secret: str, *, min_length: int = 4) -> None:
    """Mask this exact string from now on, and make sure the watched loggers carry the
    filter (``install``).

    Strings shorter than ``min_length`` are not registered: masking "abc" everywhere would
    garble ordinary words and hide nothing (the Finkok client asks for 6; the element
    masking still covers its password in envelopes).
    """
    global _longest_first
    if len(secret) >= min_length:
        with _lock:
            _longest_first = tuple(sorted({*_longest_first, secret}, key=len, reverse=True))
    install()


def _registered(text: str) -> str:
    for secret in _longest_first:  # (a tuple replaced whole when one is added: no lock)
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def redact(text: str) -> str:
    """``text`` with credential elements masked and every registered secret replaced.
    (Every log line's values pass through here: a text without a ``<`` has no element to
    mask, and the secrets are sorted once when registered, not per call.)"""
    if "<" in text:
        text = _ELEMENT.sub(lambda m: f"{m.group(1)}{MASK}{m.group(4)}", text)
    return _registered(text)


class RedactingFilter(logging.Filter):
    """Rewrites a record's rendered message (never drops the record)."""

    def __init__(self, rewrite: Callable[[str], str] = redact, name: str = "") -> None:
        super().__init__(name)
        self.rewrite = rewrite

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave it to logging's own handling
            return True
        clean = self.rewrite(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


_FILTER = RedactingFilter(redact, "secrets")
_install_lock = threading.Lock()


def install(logger_names: Iterable[str] = WATCHED_LOGGERS) -> None:
    """Attach the filter to each logger (idempotent)."""
    with _install_lock:
        for name in logger_names:
            logger = logging.getLogger(name)
            if _FILTER not in logger.filters:
                logger.addFilter(_FILTER)
