"""One access-log line per request: method, path, status, duration, API key id/prefix.

Never the query string, a header or a body: ids may be sent as query parameters and an
XML is a fiscal document. (Uvicorn's own access log, which prints the query string, is off.)
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("worker.api.access")


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # if the app raises before answering

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            ms = (time.perf_counter() - start) * 1000
            key = scope.get("state", {}).get("api_key", "-")
            path = _printable(scope["path"])
            log.info(
                "%s %s %d %.1fms key=%s", scope["method"], path, status, ms, key,
                extra={
                    "http_method": scope["method"], "http_path": path,
                    "http_status": status, "duration_ms": round(ms, 1), "api_key": key,
                },
            )


def _printable(text: str) -> str:
    """A percent-decoded path may hold newlines or control characters: escape them."""
    return text if text.isprintable() else repr(text)[1:-1]
