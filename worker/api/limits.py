"""The door of the HTTP API, before any body is read (pure ASGI middlewares).

``AuthGateMiddleware``: a request that carries a body to ``/v1/`` is authenticated from
its headers first; without a valid key it is answered 401 before a byte of the body is
read (64 unauthenticated 2 MiB bodies used to be read in full first). The principal is
left in the request state for the route's ``require_key``.

``BodyLimitMiddleware``: a declared ``Content-Length`` over the limit is answered 413 at
once, without reading a byte of the body. A chunked (or under-declared) body is read
message by message and answered 413 as soon as it passes the limit; the app never holds
more than the limit. A body that does not arrive within ``body_timeout_s`` (a client
sending 2 bytes at a time) is answered 408. Below the limit, the body read here is handed
to the app unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from worker.api.errors import error_response, is_unavailable, unavailable_response

LimitFor = Callable[[str], int]  # content type -> max body bytes


class AuthGateMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH")
                or not scope["path"].startswith("/v1/")):
            await self.app(scope, receive, send)
            return
        from starlette.concurrency import run_in_threadpool

        from worker.api.keys import authenticate

        headers = dict(scope["headers"])
        presented = headers.get(b"x-api-key", b"").decode("latin-1").strip()
        bearer = headers.get(b"authorization", b"").decode("latin-1").strip()
        if not presented and bearer.lower().startswith("bearer "):
            presented = bearer[7:].strip()
        if not presented:
            await _unauthorized(scope, receive, send, "missing_api_key",
                                "missing API key: send it in X-API-Key or Authorization: Bearer")
            return
        services = scope["app"].state.services
        try:
            principal = await run_in_threadpool(authenticate, services.sessions, presented)
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            await unavailable_response()(scope, receive, send)  # 503 + Retry-After
            return
        if principal is None:
            await _unauthorized(scope, receive, send, "invalid_api_key",
                                "invalid or revoked API key")
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


async def _unauthorized(scope: Scope, receive: Receive, send: Send, reason: str,
                        message: str) -> None:
    response = error_response(401, reason, message)
    response.headers["WWW-Authenticate"] = 'Bearer realm="billing"'
    await response(scope, receive, send)


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, limit_for: LimitFor, body_timeout_s: float = 30.0) -> None:
        self.app = app
        self.limit_for = limit_for
        self.body_timeout_s = body_timeout_s

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
        deadline = asyncio.get_running_loop().time() + self.body_timeout_s
        while True:
            try:
                message = await asyncio.wait_for(
                    receive(), timeout=max(0.0, deadline - asyncio.get_running_loop().time()))
            except TimeoutError:
                response = error_response(408, "body_timeout", "the request body did not arrive "
                                          f"within {self.body_timeout_s:g} s")
                response.headers["Connection"] = "close"
                await response(scope, receive, send)
                return
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
