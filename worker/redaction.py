"""The secrets this process knows, and a logging filter that masks them wherever they appear.

Clients register what they hold (the Finkok password, every SIF secret) when they are
built; the filter is attached to the loggers of the libraries that could print them
(zeep and urllib3 log whole SOAP envelopes at DEBUG; httpcore logs response headers),
and the structured-log processor masks every record our own handler renders.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

MASK = "********"

_secrets: set[str] = set()
_lock = threading.Lock()


def register_secret(secret: str, *, min_length: int = 4) -> None:
    """Mask this exact string from now on. Very short strings are not registered: masking
    "abc" everywhere would garble ordinary words and hide nothing."""
    if len(secret) >= min_length:
        with _lock:
            _secrets.add(secret)


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by the mask, longest first."""
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


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


def install(filter_: logging.Filter, logger_names: Iterable[str]) -> None:
    """Attach the filter to each logger (a logger's filters only see its own records)."""
    for name in logger_names:
        logger = logging.getLogger(name)
        if filter_ not in logger.filters:
            logger.addFilter(filter_)
