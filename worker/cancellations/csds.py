"""The CSD that signs an emisor's cancellation requests (setting ``cancel_csds``).

Each entry names files (certificate, encrypted key, a file with the key's password) or
``builtin:test-emisor`` (the project's own test emisor, the default). The password is read
from its file when the CSD is loaded, registered with the log redaction, and kept only in
the loaded key; errors name the RFC, the setting and the file path, never the password.
Loaded CSDs are cached per process (opening a SAT key runs PBKDF2), keyed by the paths and
the files' modification times, so a rotated CSD is picked up.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from worker.cfdi.csd import EMISOR_RFC, Csd, CsdError, default_emisor_csd, load_csd

BUILTIN = "builtin:test-emisor"
SETTING = "BILLING_CANCEL_CSDS"

_cache: dict[tuple[Any, ...], Csd] = {}
_lock = threading.Lock()


class NoCsd(LookupError):
    """No usable CSD for this emisor: the message names the RFC and the setting to check."""


def has_csd(cancel_csds: dict[str, Any], rfc: str) -> bool:
    return rfc.upper() in cancel_csds


def signing_csd(cancel_csds: dict[str, Any], rfc: str) -> Csd:
    """The emisor's CSD, loaded (or from this process's cache)."""
    entry = cancel_csds.get(rfc.upper())
    if entry is None:
        raise NoCsd(f"no CSD configured to sign cancellations for {rfc} (set {SETTING})")
    if entry == BUILTIN:
        if rfc.upper() != EMISOR_RFC:
            raise NoCsd(f"{BUILTIN} is {EMISOR_RFC}'s, not {rfc}'s (check {SETTING})")
        return default_emisor_csd()
    paths = [Path(entry[k]) for k in ("cer", "key", "password_file")]
    try:
        stamp = tuple((str(p), os.stat(p).st_mtime_ns) for p in paths)
    except OSError as exc:
        raise NoCsd(f"{SETTING}[{rfc}]: cannot read {exc.filename} ({exc.strerror})") from None
    with _lock:
        csd = _cache.get(stamp)
        if csd is not None:
            return csd
        password = paths[2].read_text(encoding="utf-8").strip()
        from worker import redaction

        redaction.register_secret(password, min_length=4)
        try:
            csd = load_csd(paths[0].read_bytes(), paths[1].read_bytes(), password)
        except CsdError as exc:
            raise NoCsd(f"{SETTING}[{rfc}]: {exc}") from None
        finally:
            del password
        if csd.rfc.upper() != rfc.upper():
            raise NoCsd(f"{SETTING}[{rfc}]: the certificate is {csd.rfc}'s")
        _cache[stamp] = csd
        return csd
