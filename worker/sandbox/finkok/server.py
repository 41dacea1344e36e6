"""A local Finkok that speaks Finkok's wire format (SOAP 1.1 over HTTP).

    with FinkokSandbox(port=0) as sandbox:          # 127.0.0.1, a free port
        client = FinkokClient(sandbox.url, "sandbox@example.com", "sandbox")
        sandbox.configure(drop_rate=1.0)

    python -m worker.sandbox.finkok --port 8701     # as a process

Endpoints (``<svc>``: stamp, cancel, utilities, registration, retentions, firmar):

* ``GET  /servicios/soap/<svc>.wsdl``   our WSDL, soap:address pointing here
* ``POST /servicios/soap/<svc>`` and ``POST /servicios/soap/<svc>.wsdl``   SOAP
* ``GET  /_sandbox/health``  ``{"ok": true}``
* ``GET  /_sandbox/config``  the switches (password masked)
* ``POST /_sandbox/config``  JSON object of switches to change (see SandboxConfig)
* ``GET  /_sandbox/stats``   per-document counters (new_stamps, hits_307, calls...)
* ``POST /_sandbox/reset``   forget documents and counters; ``{"config": true}`` also
  restores the default switches (credentials are kept)

Behaviour lives in the other modules of ``worker.sandbox.finkok``; this one is the HTTP shell.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from worker.finkok.services import SOAP_PATH
from worker.sandbox.finkok.app import FinkokSimulator
from worker.sandbox.finkok.config import ConfigError, SandboxConfig
from worker.sandbox.finkok.wire import MAX_REQUEST_BYTES
from worker.sandbox.http import SandboxHTTPServer

log = logging.getLogger("worker.sandbox.finkok")
CONTROL = "/_sandbox/"


def _hostport(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"{host.decode() if isinstance(host, bytes) else host}:{port}"


class _Server(SandboxHTTPServer):

    def __init__(self, address: tuple[str, int], simulator: FinkokSimulator) -> None:
        self.simulator = simulator
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def close_connections(self) -> None:
        with self.connections_lock:
            conns = list(self.connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like nginx in front of Finkok
    server_version = "nginx"
    sys_version = ""
    timeout = 120  # idle keep-alive connections are closed after this
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body are separate writes: without this, Nagle + delayed ACK add ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.connections_lock:
                self.server.connections.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s %s", self.address_string(), format % args)

    # --- helpers --------------------------------------------------------------------------

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, data: Any) -> None:
        self._send(status, json.dumps(data, ensure_ascii=False).encode(), "application/json")

    def _body(self) -> bytes | None:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0 or length > MAX_REQUEST_BYTES:
            self.close_connection = True
            self._send(413 if length > 0 else 411, b"bad Content-Length", "text/plain")
            return None
        return self.rfile.read(length) if length else b""

    def _service_key(self) -> str | None:
        path = self.path.split("?", 1)[0]
        if not path.startswith(SOAP_PATH):
            return None
        key = path[len(SOAP_PATH):]
        return key[:-5] if key.endswith(".wsdl") else key

    def _base_url(self) -> str:
        return f"http://{self.headers.get('Host') or _hostport(self.server)}"

    # --- GET ------------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        sim = self.server.simulator
        path = self.path.split("?", 1)[0]
        if path == CONTROL + "health":
            return self._json(200, {"ok": True})
        if path == CONTROL + "config":
            return self._json(200, sim.config.public())
        if path == CONTROL + "stats":
            return self._json(200, sim.stats())
        key = self._service_key()
        wsdl = sim.wsdl(key, self._base_url()) if key and path.endswith(".wsdl") else None
        if wsdl is None:
            return self._send(404, b"Not Found", "text/plain")
        self._send(200, wsdl, "text/xml; charset=utf-8")

    # --- POST -----------------------------------------------------------------------------

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        body = self._body()
        if body is None:
            return
        path = self.path.split("?", 1)[0]
        if path.startswith(CONTROL):
            return self._control(path, body)
        key = self._service_key()
        if key is None:
            return self._send(404, b"Not Found", "text/plain")
        reply = self.server.simulator.handle_soap(key, body)
        if reply.drop:  # the answer is lost: close without a byte
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._send(reply.status, reply.body,
                   "text/html" if reply.plain else "text/xml; charset=utf-8")

    def _control(self, path: str, body: bytes) -> None:
        sim = self.server.simulator
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            return self._json(400, {"error": "body is not JSON"})
        if not isinstance(data, dict):
            return self._json(400, {"error": "body must be a JSON object"})
        if path == CONTROL + "config":
            try:
                sim.config.update(data)
            except ConfigError as exc:
                return self._json(400, {"error": str(exc)})
            if "seed" in data:
                sim.reseed()
            return self._json(200, sim.config.public())
        if path == CONTROL + "reset":
            if data.get("config"):
                defaults = SandboxConfig(username=sim.config.username, password=sim.config.password)
                sim.config.update(vars(defaults))
            sim.reset()
            return self._json(200, {"ok": True})
        self._json(404, {"error": f"unknown control endpoint {path}"})


class FinkokSandbox:
    """The local Finkok on a background thread. Use as a context manager or start()/stop()."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        username: str = "sandbox@example.com",
        password: str = "sandbox",
        **switches: Any,
    ) -> None:
        config = SandboxConfig(username=username, password=password)
        config.update(switches)
        self.simulator = FinkokSimulator(config)
        self._host = host
        self._port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def config(self) -> SandboxConfig:
        return self.simulator.config

    @property
    def url(self) -> str:
        """Base URL (what settings call finkok_base_url), e.g. http://127.0.0.1:40123."""
        if self._server is None:
            raise RuntimeError("the sandbox is not started")
        return f"http://{_hostport(self._server)}"

    def start(self) -> FinkokSandbox:
        if self._server is not None:
            return self
        self.simulator.stop_event.clear()
        self._server = _Server((self._host, self._port), self.simulator)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"finkok-sandbox:{self._server.server_address[1]}", daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self.simulator.stop_event.set()  # wake sleeping hangs and latencies
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FinkokSandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- control from Python ----------------------------------------------------------------

    def configure(self, **changes: Any) -> None:
        self.simulator.config.update(changes)
        if "seed" in changes:
            self.simulator.reseed()

    def reset(self) -> None:
        self.simulator.reset()

    def stats(self) -> dict[str, Any]:
        return self.simulator.stats()

    def document_stats(self, xml: bytes) -> dict[str, Any] | None:
        """Counters of one sealed document (by its Sello), or None if never seen."""
        from worker.sandbox.finkok.documents import read

        rec = self.simulator.ledger.get(read(xml).key)
        return rec.summary() if rec else None


def main(argv: list[str] | None = None) -> None:
    from worker.settings import load_settings

    settings = load_settings()
    parser = argparse.ArgumentParser(description="Local Finkok sandbox (SOAP over HTTP)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8701)
    parser.add_argument("--username", default=settings.finkok_username)
    parser.add_argument(
        "--password", default=None,
        help="default: BILLING_FINKOK_PASSWORD (avoid passwords on the command line)",
    )
    parser.add_argument("--config", default=None, help="JSON object of switches, e.g. '{\"latency_ms\": 50}'")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    switches = json.loads(args.config) if args.config else {}
    sandbox = FinkokSandbox(
        args.host, args.port, username=args.username,
        password=args.password or settings.finkok_password.get_secret_value(), **switches,
    )
    sandbox.start()
    log.info("Finkok sandbox listening on %s (WSDL: %s/servicios/soap/stamp.wsdl)", sandbox.url, sandbox.url)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()
