"""A local SIF: the billing-status endpoint with SIF's answers and switchable failures.

Stdlib only (``http.server.ThreadingHTTPServer``). What it does with one PUT to
``{base_path}/empresas/{empresaRefId}/documents/billing/status``, in order:

1. a scripted fault (``faults``, consumed one per request) or a random one by rate:
   ``hang`` (hold the connection ``hang_s`` then close, nothing processed), ``500``/``502``
   /``503`` (answer it, nothing processed), ``404`` (after the secret check);
2. ``secret`` header wrong: 401 with SIF's exact body; no ``generatorId``: 400;
3. empresaRefId not in ``known_empresas`` (None = all known): 404 with SIF's exact body;
4. not JSON or not valid against our schema: 400 naming the reasons;
5. an OK already held for (empresa, reference): 409 with SIF's exact body;
6. otherwise the status is accepted (recorded in the per-reference sequence);
7. ``drop`` ("commit then drop"): the connection is closed without an answer, after
   step 6 took effect; else ``latency_s`` passes, then 204 (or the 409).

Every PUT is recorded (body, decision, fault) and readable from Python (``received()``,
``statuses()``) and over HTTP: ``GET /_sandbox/received``, ``GET|POST /_sandbox/config``,
``POST /_sandbox/reset``. Run as a process: ``python -m worker.sandbox.sif --port 8702``.
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import json
import logging
import re
import signal
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from types import FrameType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from worker.sandbox.http import SandboxHTTPServer
from worker.sandbox.sif.config import (
    BODY_401,
    BODY_404,
    BODY_409,
    DEFAULT_BASE_PATH,
    DEFAULT_SECRET,
    MAX_BODY_BYTES,
    SandboxConfig,
    coerce,
    error_body,
)
from worker.sandbox.sif.state import State
from worker.sif.schema import body_errors

log = logging.getLogger("worker.sandbox.sif")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so the worker's pooled client reuses connections
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    server: _Server

    # --- plumbing ---------------------------------------------------------------------
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib name)
        log.debug("sif-sandbox %s " + format, self.address_string(), *args)

    def _send(self, code: int, payload: Any | None = None) -> None:
        data = b"" if payload is None else json.dumps(payload, ensure_ascii=False).encode()
        try:
            self.send_response(code)
            if payload is not None:
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
            elif code != 204:
                self.send_header("Content-Length", "0")
            self.end_headers()
            if data:
                self.wfile.write(data)
        except OSError:  # the client gave up (its timeout): nothing to answer to
            self.close_connection = True

    def _read_body(self) -> bytes | None:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY_BYTES:
            self._send(400, error_body(400, "Content-Length ausente o demasiado grande"))
            self.close_connection = True
            return None
        return self.rfile.read(length) if length else b""

    @property
    def _state(self) -> State:
        return self.server.state

    # --- routes -----------------------------------------------------------------------
    def do_PUT(self) -> None:  # noqa: N802 (stdlib name)
        empresa = self.server.match_status_path(self.path)
        if empresa is None:
            self._send(404, error_body(404, "Ruta no encontrada"))
            return
        raw = self._read_body()
        if raw is not None:
            self._billing_status(empresa, raw)

    def do_GET(self) -> None:  # noqa: N802
        parts = urlsplit(self.path)
        if parts.path == "/_sandbox/received":
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            self._send(200, self.server.sandbox.snapshot(query.get("empresa"), query.get("reference")))
        elif parts.path == "/_sandbox/config":
            self._send(200, self.server.sandbox.configure())
        elif self.server.match_status_path(self.path) is not None:
            self._send(405, error_body(405, "Método no permitido"))
        else:
            self._send(404, error_body(404, "Ruta no encontrada"))

    def do_POST(self) -> None:  # noqa: N802
        path = urlsplit(self.path).path
        raw = self._read_body()
        if raw is None:
            return
        try:
            payload = json.loads(raw) if raw.strip() else {}
            if not isinstance(payload, dict):
                raise ValueError("expected a JSON object")
            if path == "/_sandbox/config":
                self._send(200, self.server.sandbox.configure(**payload))
            elif path == "/_sandbox/reset":
                self.server.sandbox.reset()
                self._send(200, {"reset": True})
            else:
                self._send(404, error_body(404, "Ruta no encontrada"))
        except ValueError as exc:
            self._send(400, error_body(400, str(exc)))

    # --- the endpoint -----------------------------------------------------------------
    def _billing_status(self, empresa: str, raw: bytes) -> None:
        fault, config = self._state.next_fault()
        secret_ok = hmac.compare_digest(
            self.headers.get("secret", "").encode(), config.secret.encode()
        )
        generator_id = self.headers.get("generatorId")
        body: Any = None
        with contextlib.suppress(ValueError):
            body = json.loads(raw)
        entry: dict[str, Any] = {
            "at": datetime.now(UTC).isoformat(),
            "empresa_ref_id": empresa,
            "peer_port": self.client_address[1],  # equal across requests: a reused connection
            "generator_id": generator_id,
            "secret_ok": secret_ok,
            "content_type": self.headers.get("Content-Type"),
            "reference": body.get("reference") if isinstance(body, dict) else None,
            "status": body.get("status") if isinstance(body, dict) else None,
            "body": body,
            "fault": fault,
            "answered": True,
        }

        if fault == "hang":
            entry.update(code=None, answered=False)
            self._state.record(entry)
            self._state.stopping.wait(config.hang_s)
            self.close_connection = True
            return
        if fault is not None and fault.startswith("5"):
            code = int(fault)
            entry["code"] = code
            self._state.record(entry)
            self._send(code, error_body(code, config.error_message))
            return

        code, answer = self._decide(config, empresa, body, secret_ok, generator_id, fault)
        entry["code"] = code
        if isinstance(answer, dict) and code == 400:
            entry["reason"] = answer["error"]["message"]
        if fault == "drop" and code in (204, 409):
            entry["answered"] = False
            self._state.record(entry)
            self.close_connection = True  # committed, never answered
            return
        self._state.record(entry)
        if config.latency_s > 0:
            self._state.stopping.wait(config.latency_s)
        self._send(code, answer)

    def _decide(
        self,
        config: SandboxConfig,
        empresa: str,
        body: Any,
        secret_ok: bool,
        generator_id: str | None,
        fault: str | None,
    ) -> tuple[int, dict[str, Any] | None]:
        if not secret_ok:
            return 401, BODY_401
        if not generator_id:
            return 400, error_body(400, "falta el encabezado generatorId")
        known = config.known_empresas
        if (known is not None and empresa not in known) or fault == "404":
            return 404, BODY_404
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return 400, error_body(400, "Content-Type debe ser application/json")
        if body is None:
            return 400, error_body(400, "el cuerpo no es JSON válido")
        problems = body_errors(body)
        if problems:
            return 400, error_body(400, "; ".join(problems))
        code = self._state.take_status(empresa, body["reference"], body["status"])
        return code, (BODY_409 if code == 409 else None)


class _Server(SandboxHTTPServer):
    def __init__(self, address: tuple[str, int], sandbox: SifSandbox) -> None:
        self.sandbox = sandbox
        self.state = sandbox._state
        self._path_re = re.compile(
            "^" + re.escape(sandbox.base_path.rstrip("/"))
            + r"/empresas/([^/?#]+)/documents/billing/status/?(?:\?.*)?$"
        )
        super().__init__(address, _Handler)

    def match_status_path(self, path: str) -> str | None:
        match = self._path_re.match(path)
        return unquote(match.group(1)) if match else None


class SifSandbox:
    """A local SIF on a background thread. ``url`` is the base for settings.sif_base_url."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        secret: str = DEFAULT_SECRET,
        known_empresas: set[str] | list[str] | None = None,
        base_path: str = DEFAULT_BASE_PATH,
        **switches: Any,
    ) -> None:
        config = coerce(
            SandboxConfig(), {"secret": secret, "known_empresas": known_empresas, **switches}
        )
        self.host = host
        self.base_path = "/" + base_path.strip("/")
        self._state = State(config)
        self._server = _Server((host, port), self)
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"<SifSandbox {self.url}>"

    # --- lifecycle --------------------------------------------------------------------
    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return self.root_url + self.base_path

    def start(self) -> SifSandbox:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                name=f"sif-sandbox-{self.port}", daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        self._state.stopping.set()  # wakes handlers sleeping in latency or hang
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> SifSandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Serve on the calling thread until stop() (from a signal handler or another thread)."""
        self._server.serve_forever(poll_interval=0.2)

    # --- control ----------------------------------------------------------------------
    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change switches (see SandboxConfig); returns the config, secret masked."""
        return self._state.configure(changes)

    def reset(self) -> None:
        """Forget every request and held status; back to the constructor's switches."""
        self._state.reset()

    def received(
        self, empresa_ref_id: str | None = None, reference: str | None = None
    ) -> list[dict[str, Any]]:
        """Every PUT recorded so far (copies), optionally for one empresa / reference."""
        with self._state.lock:
            return [
                json.loads(json.dumps(r))
                for r in self._state.requests
                if (empresa_ref_id is None or r["empresa_ref_id"] == empresa_ref_id)
                and (reference is None or r["reference"] == reference)
            ]

    def statuses(self, empresa_ref_id: str, reference: str) -> list[str]:
        """The statuses SIF accepted for one document, in order (an OK ends the list)."""
        with self._state.lock:
            return list(self._state.statuses.get((empresa_ref_id, reference), []))

    def snapshot(
        self, empresa_ref_id: str | None = None, reference: str | None = None
    ) -> dict[str, Any]:
        """What ``GET /_sandbox/received`` answers."""
        requests = self.received(empresa_ref_id, reference)
        with self._state.lock:
            statuses = {
                f"{e}/{r}": list(s)
                for (e, r), s in self._state.statuses.items()
                if (empresa_ref_id is None or e == empresa_ref_id)
                and (reference is None or r == reference)
            }
        return {"requests": requests, "statuses": statuses}

    def wait_for_requests(self, count: int, timeout_s: float = 5.0) -> bool:
        """Block until at least ``count`` PUTs were recorded (or the timeout passes)."""
        with self._state.lock:
            return self._state.lock.wait_for(
                lambda: len(self._state.requests) >= count, timeout=timeout_s
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m worker.sandbox.sif", description="Run a local SIF sandbox."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8702)
    parser.add_argument("--base-path", default=DEFAULT_BASE_PATH)
    parser.add_argument(
        "--known-empresa", action="append", dest="known_empresas", default=None,
        help="an empresaRefId SIF knows (repeat); default: every empresa is known",
    )
    parser.add_argument("--latency", type=float, default=0.0, dest="latency_s")
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--not-found-rate", type=float, default=0.0)
    parser.add_argument("--drop-rate", type=float, default=0.0)
    parser.add_argument("--hang-rate", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)

    # The secret comes from the worker's own settings (env, *_FILE or env file), never argv.
    from worker.settings import load_settings

    secret = load_settings().sif_secret.get_secret_value()
    sandbox = SifSandbox(
        args.host, args.port, secret=secret, known_empresas=args.known_empresas,
        base_path=args.base_path, latency_s=args.latency_s, error_rate=args.error_rate,
        not_found_rate=args.not_found_rate, drop_rate=args.drop_rate,
        hang_rate=args.hang_rate, seed=args.seed,
    )

    def _stop(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=sandbox._server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(f"SIF sandbox listening on {sandbox.url}", flush=True)
    try:
        sandbox.serve_forever()
    finally:
        sandbox._state.stopping.set()
        sandbox._server.server_close()
    return 0

