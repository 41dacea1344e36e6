"""HTTP client for SIF's one call: ``PUT {base}/empresas/{empresaRefId}/documents/billing/status``.

One ``urllib3.PoolManager`` per SifClient (one kept-alive pool per SIF host), reused for
every call: no retries (a PUT is retried by the pipeline's policy, never by the library), no
redirects followed. Why urllib3: CPU of the calling thread per PUT of a 60 KB body against
the sandbox, 2 cores: httpx's ``Client.stream`` 1.0-1.3 ms, urllib3's pool 0.60-0.64 ms
(requests 1.9-2.2 ms, bare http.client 0.38-0.40 ms); ``put_status`` as a whole (its JSON
encoding, 0.37 ms, included; bench.floor's piece d, paired rounds in one process), 58 KB
body: 1.80 ms with httpx, 1.22 ms now; the floor's 15 KB body: 1.13 -> 0.73 ms.

Base URL, secret and generatorId come from settings, overridable per empresaRefId
(``settings.sif_overrides``). Transport failures become SifTimeout / SifConnectionError,
whose texts never carry the secret; the secret is also registered with the log redaction
filter (urllib3 logs no request headers; it logs one DEBUG line per request and nothing at
INFO: redirects, its only INFO line, are off).
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import time
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import quote, urlsplit

import certifi
import urllib3
from pydantic import SecretStr
from urllib3 import exceptions as u3

from worker.ids import segment_problem
from worker.redaction import redact, register_secret
from worker.settings import Settings
from worker.sif.schema import validate_body

log = logging.getLogger("worker.sif")

MAX_BODY_TEXT_BYTES = 2048
STATUS_PATH = "/empresas/{empresa}/documents/billing/status"
OVERRIDE_KEYS = frozenset({"base_url", "secret", "generator_id"})


class SifError(Exception):
    """Base of every SIF client error."""


class SifConfigError(SifError, ValueError):
    """Settings or an empresaRefId that cannot make a valid request (nothing was sent)."""


class SifTransportError(SifError):
    """No HTTP answer. The request may or may not have reached SIF (ambiguous)."""

    def __init__(self, message: str, *, duration_ms: int) -> None:
        super().__init__(redact(message))
        self.duration_ms = duration_ms


class SifTimeout(SifTransportError):
    pass


class SifConnectionError(SifTransportError):
    pass


@dataclass(frozen=True)
class SifTarget:
    """Where and as whom to PUT for one empresa. The secret stays a SecretStr (masked repr)."""

    base_url: str
    secret: SecretStr
    generator_id: str


@dataclass(frozen=True)
class SifResponse:
    status_code: int
    body_text: str  # at most MAX_BODY_TEXT_BYTES of the answer, decoded
    duration_ms: int


def _check_base_url(base_url: str, where: str) -> str:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SifConfigError(f"{where}: SIF base URL must be http(s)://host/..., got {base_url!r}")
    if parts.username or parts.password:
        raise SifConfigError(f"{where}: SIF base URL must not carry credentials")
    return base_url.rstrip("/")


def empresa_path_segment(empresa_ref_id: str) -> str:
    """``empresa_ref_id`` as one URL path segment; refuses anything that could change the path."""
    problem = segment_problem(empresa_ref_id)
    if problem is not None:
        raise SifConfigError(f"empresaRefId {empresa_ref_id!r} {problem}")
    return quote(empresa_ref_id, safe="")


def status_url(base_url: str, empresa_ref_id: str) -> str:
    return base_url.rstrip("/") + STATUS_PATH.format(empresa=empresa_path_segment(empresa_ref_id))


def check_overrides(overrides: dict[str, dict[str, str]]) -> None:
    """Refuse unknown keys (a typo would silently send to the default SIF)."""
    for empresa, values in overrides.items():
        unknown = set(values) - OVERRIDE_KEYS
        if unknown:
            raise SifConfigError(
                f"sif_overrides[{empresa!r}]: unknown keys {sorted(unknown)} "
                f"(allowed: {sorted(OVERRIDE_KEYS)})"
            )
        if "base_url" in values:
            _check_base_url(values["base_url"], f"sif_overrides[{empresa!r}].base_url")


def resolve_target(settings: Settings, empresa_ref_id: str) -> SifTarget:
    """Base URL, secret and generatorId for one empresa: its override, else the defaults."""
    override = settings.sif_overrides.get(empresa_ref_id, {})
    base = override.get("base_url", settings.sif_base_url)
    secret = SecretStr(override["secret"]) if "secret" in override else settings.sif_secret
    return SifTarget(
        base_url=_check_base_url(base, "sif_base_url"),
        secret=secret,
        generator_id=override.get("generator_id", settings.sif_generator_id),
    )


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


@cache
def tls_context() -> ssl.SSLContext:
    """The verification httpx's default gave this client (``httpx.create_ssl_context``):
    ``SSL_CERT_FILE`` or ``SSL_CERT_DIR`` when set, else certifi's CA bundle; hostnames
    checked. Built once per process: building it (loading the CA bundle) was ~37 ms of
    every new client. A worker builds it before forking its pool."""
    if os.environ.get("SSL_CERT_FILE"):
        return ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
    if os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context(capath=os.environ["SSL_CERT_DIR"])
    return ssl.create_default_context(cafile=certifi.where())


POOL_MAXSIZE = 20  # idle connections kept per SIF host (httpx's keep-alive default)
# No retry of any kind (connect, read, status, Retry-After) and no redirect followed: what
# urllib3 makes of ``retries=False``, built once instead of converted on every call.
NO_RETRIES = urllib3.Retry(total=False, redirect=False)


def _timed_out(exc: Exception) -> bool:
    """A timeout: connecting, reading, or sending the body (urllib3 wraps a send that
    stalls past the timeout in ProtocolError("Connection aborted.", TimeoutError))."""
    if isinstance(exc, u3.NewConnectionError):  # a ConnectTimeoutError subclass: refused, DNS
        return False
    if isinstance(exc, (u3.TimeoutError, TimeoutError)):
        return True
    return isinstance(exc, u3.ProtocolError) and any(isinstance(a, TimeoutError) for a in exc.args)


class SifClient:
    """Sends billing statuses to SIF. Thread-safe (urllib3's PoolManager is); close() when
    done."""

    def __init__(self, settings: Settings) -> None:
        check_overrides(settings.sif_overrides)
        _check_base_url(settings.sif_base_url, "sif_base_url")
        self._settings = settings
        register_secret(settings.sif_secret.get_secret_value())
        for values in settings.sif_overrides.values():
            if "secret" in values:
                register_secret(values["secret"])
        # Sending the body runs under the connect timeout (urllib3 has no write timeout of
        # its own); reading the answer under the read timeout. block=False: a thread never
        # waits for a pooled connection, it opens one more.
        self._http = urllib3.PoolManager(
            num_pools=max(10, len(settings.sif_overrides) + 1),
            maxsize=POOL_MAXSIZE,
            block=False,
            retries=NO_RETRIES,
            timeout=urllib3.Timeout(connect=settings.sif_connect_timeout_s,
                                    read=settings.sif_read_timeout_s),
            ssl_context=tls_context(),
        )

    def __repr__(self) -> str:
        return f"<SifClient base={self._settings.sif_base_url} generatorId={self._settings.sif_generator_id}>"

    def __enter__(self) -> SifClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.clear()  # closes every pool's idle connections

    def url_for(self, empresa_ref_id: str) -> str:
        return status_url(resolve_target(self._settings, empresa_ref_id).base_url, empresa_ref_id)

    def put_status(self, empresa_ref_id: str, body: dict[str, Any], *,
                   validated: bool = False) -> SifResponse:
        """Validate ``body`` and PUT it. Raises SifBodyError/SifConfigError before sending.
        ``validated``: the caller has just passed this very body through ``validate_body``
        (the notifier does, to settle an invalid one without a PUT): not validated again."""
        if not validated:
            validate_body(body)
        target = resolve_target(self._settings, empresa_ref_id)
        url = status_url(target.base_url, empresa_ref_id)
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        headers = {
            "secret": target.secret.get_secret_value(),
            "generatorId": target.generator_id,
            "Content-Type": "application/json",
        }
        started = time.monotonic()
        try:
            response = self._http.urlopen("PUT", url, body=content, headers=headers,
                                          redirect=False, preload_content=False)
            try:
                raw = response.read(MAX_BODY_TEXT_BYTES)
                status = response.status
            finally:
                if not response.closed:  # an answer longer than what we read: drop the connection
                    response.close()
                response.release_conn()  # a no-op when reading to the end released it
        except (u3.HTTPError, OSError) as exc:  # OSError: one urllib3 did not wrap (none expected)
            if _timed_out(exc):
                raise SifTimeout(
                    f"SIF PUT {url}: {type(exc).__name__} ({exc or 'timed out'})",
                    duration_ms=_elapsed_ms(started),
                ) from None
            raise SifConnectionError(
                f"SIF PUT {url}: {type(exc).__name__} ({exc or 'no answer'})",
                duration_ms=_elapsed_ms(started),
            ) from None
        duration = _elapsed_ms(started)
        text = raw.decode("utf-8", errors="replace")  # (read at most MAX_BODY_TEXT_BYTES)
        log.debug("SIF PUT %s -> %s in %d ms", url, status, duration)
        return SifResponse(status_code=status, body_text=redact(text), duration_ms=duration)
