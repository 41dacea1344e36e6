"""Keeps Finkok passwords (and CSD keys) out of log records.

zeep logs every request envelope at DEBUG on ``zeep.transports`` — with the password in
``<ns0:password>``. A filter on the loggers that emit such records rewrites each record
before any handler (including pytest's caplog) sees it: password/passphrase/key elements
are masked, and every password a :class:`~worker.finkok.client.FinkokClient` registered is
replaced wherever it appears. Logger filters apply to records created on that logger, so
the filter is attached to every zeep logger that formats message content.
"""

from __future__ import annotations

import re
import threading

from worker import redaction
from worker.redaction import MASK

_ELEMENT = re.compile(
    r"(<(?P<p>[\w.-]+:)?(?P<name>password|reseller_password|passphrase|key)(?:\s[^>]*)?>)"
    r"[^<]*"
    r"(</(?P=p)?(?P=name)\s*>)",
    re.IGNORECASE,
)

_LOGGERS = (
    "zeep",
    "zeep.transports",
    "zeep.wsdl.bindings.soap",
    "zeep.client",
    "zeep.xsd.schema",
    "urllib3.connectionpool",
    "requests",
)

_installed = False
_install_lock = threading.Lock()


def register_secret(secret: str) -> None:
    """Mask this exact string in every record of the watched loggers.

    Defence in depth beside the element masking: it also catches a password echoed
    anywhere else. Strings under 6 characters are not registered (they would garble
    ordinary words); the element masking still covers them in envelopes.
    """
    redaction.register_secret(secret, min_length=6)


def redact(text: str) -> str:
    """``text`` with credential elements masked and registered secrets replaced."""
    return redaction.redact(_ELEMENT.sub(lambda m: f"{m.group(1)}{MASK}{m.group(4)}", text))


_FILTER = redaction.RedactingFilter(redact, "finkok-secrets")


def install() -> None:
    """Attach the filter to the zeep/urllib3 loggers (idempotent)."""
    global _installed
    with _install_lock:
        if not _installed:
            redaction.install(_FILTER, _LOGGERS)
            _installed = True
