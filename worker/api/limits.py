"""Refuse oversized request bodies before they are read (pure ASGI middleware).

A declared ``Content-Length`` over the limit is answered 413 at once, without reading a
byte of the body. A chunked (or under-declared) body is read message by message and
answered 413 as soon as it passes the limit; the app never holds more than the limit.
Below the limit, the body read here is handed to the app unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from worker.api.errors import error_response

LimitFor = Callable[[str], int]  # content type -> max body bytes


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, limit_for: LimitFor) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        content_type = headers.get(b"content-type", b"").decode("latin-1")
        limit = self.limit_for(content_type.split(";", 1)[0].strip().lower())
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _too_large(scope, receive, send, limit, f"declares {int(declared)} bytes")
            return

        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _too_large(scope, receive, send, limit, f"passed {limit} bytes")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break

        await self.app(scope, _replay(b"".join(chunks), receive), send)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # http.disconnect, for streaming responses

    return replay


async def _too_large(scope: Scope, receive: Receive, send: Send, limit: int, what: str) -> None:
    response = error_response(
        413, "too_large", f"the request body {what}, over the limit of {limit} bytes"
    )
    await response(scope, receive, send)
