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
import hmac
import json
import logging
import random
import re
import signal
import sys
import threading
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from types import FrameType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from worker.sandbox.http import SandboxHTTPServer
from worker.sif.schema import body_errors

log = logging.getLogger("worker.sandbox.sif")

DEFAULT_SECRET = "sandbox-secret"
DEFAULT_BASE_PATH = "/mcs/sif"
MAX_BODY_BYTES = 32 * 1024 * 1024
FAULTS = frozenset({"hang", "drop", "404", "500", "502", "503"})

BODY_401 = {"error": {"code": 401, "message": "Token de autorización inválido."}}
BODY_404 = {"error": {"code": 404, "message": "No se encontro el documento"}}
BODY_409 = {
    "error": {
        "code": 409,
        "message": "El documento ya cuenta con un estatus de facturación correcta",
    }
}


def _error_body(code: int, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


@dataclass
class SandboxConfig:
    """Every switch. Rates are fractions of requests in [0, 1]."""

    secret: str = DEFAULT_SECRET
    known_empresas: set[str] | None = None  # None: every empresaRefId is known
    latency_s: float = 0.0  # before answering, after the status took effect
    error_rate: float = 0.0  # answered error_status, nothing processed
    error_status: int = 503
    error_message: str = "Servicio no disponible"  # the 5xx body's message
    not_found_rate: float = 0.0  # 404 for a known empresa (document not there yet)
    drop_rate: float = 0.0  # commit then drop: status taken, connection closed unanswered
    hang_rate: float = 0.0  # connection held hang_s unanswered, nothing processed
    hang_s: float = 30.0
    faults: list[str] = field(default_factory=list)  # scripted, one per request, in order
    seed: int | None = None

    def __repr__(self) -> str:
        return f"SandboxConfig({self.public()!r})"

    def public(self) -> dict[str, Any]:
        """As JSON-ready values, the secret masked."""
        out = asdict(self)
        out["secret"] = "********"
        out["known_empresas"] = (
            None if self.known_empresas is None else sorted(self.known_empresas)
        )
        return out


def _coerce(config: SandboxConfig, changes: dict[str, Any]) -> SandboxConfig:
    names = {f.name for f in fields(SandboxConfig)}
    unknown = set(changes) - names
    if unknown:
        raise ValueError(f"unknown sandbox settings: {sorted(unknown)} (known: {sorted(names)})")
    values = dict(changes)
    if "known_empresas" in values and values["known_empresas"] is not None:
        values["known_empresas"] = {str(e) for e in values["known_empresas"]}
    if "faults" in values:
        faults = [str(f) for f in values["faults"] or []]
        bad = [f for f in faults if f not in FAULTS]
        if bad:
            raise ValueError(f"unknown faults {bad} (known: {sorted(FAULTS)})")
        values["faults"] = faults
    for rate in ("error_rate", "not_found_rate", "drop_rate", "hang_rate"):
        if rate in values and not 0.0 <= float(values[rate]) <= 1.0:
            raise ValueError(f"{rate} must be within [0, 1]")
    if "error_status" in values and not 500 <= int(values["error_status"]) <= 599:
        raise ValueError("error_status must be a 5xx code")
    return replace(config, **values)


class _State:
    """Config, records and held statuses behind one lock."""

    def __init__(self, config: SandboxConfig) -> None:
        self.initial = config
        self.lock = threading.Condition()
        self.stopping = threading.Event()
        self._reset_locked()

    def _reset_locked(self) -> None:
        self.config = replace(self.initial, faults=list(self.initial.faults))
        self.rng = random.Random(self.config.seed)
        self.requests: list[dict[str, Any]] = []
        self.statuses: dict[tuple[str, str], list[str]] = {}

    def reset(self) -> None:
        with self.lock:
            self._reset_locked()
            self.lock.notify_all()

    def configure(self, changes: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.config = _coerce(self.config, changes)
            if "seed" in changes:
                self.rng = random.Random(self.config.seed)
            return self.config.public()

    def next_fault(self) -> tuple[str | None, SandboxConfig]:
        """The fault for this request (scripted first, then by rate) and a config snapshot."""
        with self.lock:
            config = self.config
            scripted = config.faults.pop(0) if config.faults else None
            snapshot = replace(config, faults=list(config.faults))
            if scripted is not None:
                return scripted, snapshot
            draw = self.rng.random
            if config.hang_rate and draw() < config.hang_rate:
                return "hang", snapshot
            if config.error_rate and draw() < config.error_rate:
                return str(config.error_status), snapshot
            if config.not_found_rate and draw() < config.not_found_rate:
                return "404", snapshot
            if config.drop_rate and draw() < config.drop_rate:
                return "drop", snapshot
            return None, snapshot

    def record(self, entry: dict[str, Any]) -> None:
        with self.lock:
            entry["seq"] = len(self.requests) + 1
            self.requests.append(entry)
            self.lock.notify_all()

    def take_status(self, empresa: str, reference: str, status: str) -> int:
        """SIF's decision for a valid body: 409 once an OK is held, else 204 (accepted)."""
        with self.lock:
            seq = self.statuses.setdefault((empresa, reference), [])
            if "OK" in seq:
                return 409
            seq.append(status)
            return 204


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
            self._send(400, _error_body(400, "Content-Length ausente o demasiado grande"))
            self.close_connection = True
            return None
        return self.rfile.read(length) if length else b""

    @property
    def _state(self) -> _State:
        return self.server.state

    # --- routes -----------------------------------------------------------------------
    def do_PUT(self) -> None:  # noqa: N802 (stdlib name)
        empresa = self.server.match_status_path(self.path)
        if empresa is None:
            self._send(404, _error_body(404, "Ruta no encontrada"))
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
            self._send(405, _error_body(405, "Método no permitido"))
        else:
            self._send(404, _error_body(404, "Ruta no encontrada"))

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
                self._send(404, _error_body(404, "Ruta no encontrada"))
        except ValueError as exc:
            self._send(400, _error_body(400, str(exc)))

    # --- the endpoint -----------------------------------------------------------------
    def _billing_status(self, empresa: str, raw: bytes) -> None:
        fault, config = self._state.next_fault()
        secret_ok = hmac.compare_digest(
            self.headers.get("secret", "").encode(), config.secret.encode()
        )
        generator_id = self.headers.get("generatorId")
        body: Any = None
        try:
            body = json.loads(raw)
        except ValueError:
            pass
        entry: dict[str, Any] = {
            "at": datetime.now(timezone.utc).isoformat(),
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
            self._send(code, _error_body(code, config.error_message))
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
            return 400, _error_body(400, "falta el encabezado generatorId")
        known = config.known_empresas
        if (known is not None and empresa not in known) or fault == "404":
            return 404, BODY_404
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return 400, _error_body(400, "Content-Type debe ser application/json")
        if body is None:
            return 400, _error_body(400, "el cuerpo no es JSON válido")
        problems = body_errors(body)
        if problems:
            return 400, _error_body(400, "; ".join(problems))
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
        config = _coerce(
            SandboxConfig(), {"secret": secret, "known_empresas": known_empresas, **switches}
        )
        self.host = host
        self.base_path = "/" + base_path.strip("/")
        self._state = _State(config)
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


if __name__ == "__main__":
    sys.exit(main())
