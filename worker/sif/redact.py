"""Keep SIF secrets out of log records, whoever emits them.

httpx/httpcore 0.28/1.0 do not log request headers, but httpcore logs *response* headers
at DEBUG, a proxy or SIF gateway could echo ours back, and a future version may log more.
A filter on every HTTP logger replaces each registered secret with ``********`` in the
rendered message. Filters on a logger only see records created on that very logger, so
each known logger name gets one.
"""

from __future__ import annotations

from worker import redaction
from worker.redaction import MASK, redact

__all__ = ["HTTP_LOGGERS", "MASK", "redact", "register_secret"]

HTTP_LOGGERS = (
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

_filter = redaction.RedactingFilter(name="sif-secrets")


def register_secret(secret: str) -> None:
    """Mask ``secret`` in every record of the HTTP loggers from now on."""
    redaction.register_secret(secret, min_length=4)
    redaction.install(_filter, HTTP_LOGGERS)
