"""Serving the API with uvicorn: in the foreground (`billing api`) or in a background
thread on a socket already bound (tests and benchmarks: port 0, no race for a port)."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

import uvicorn
from fastapi import FastAPI


def uvicorn_config(app: FastAPI, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        access_log=False,  # ours (worker.api.access) leaves out query strings
        log_config=None,  # keep the process's logging setup
        server_header=False,
        lifespan="on",
    )


def serve(app: FastAPI, host: str, port: int) -> None:
    uvicorn.Server(uvicorn_config(app, host, port)).run()


class BackgroundServer:
    """``with BackgroundServer(app) as base_url:`` a real uvicorn on 127.0.0.1:<free port>."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", start_timeout_s: float = 15.0) -> None:
        self.app = app
        self.host = host
        self.start_timeout_s = start_timeout_s
        self.server = uvicorn.Server(uvicorn_config(app, host, 0))
        self.thread: threading.Thread | None = None
        self.base_url = ""

    def __enter__(self) -> str:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        port = sock.getsockname()[1]
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, name="api-server", daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + self.start_timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the API server did not start (see the log)")
            time.sleep(0.01)
        self.base_url = f"http://{self.host}:{port}"
        return self.base_url

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=15)
