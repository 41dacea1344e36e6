"""`create_api(settings)`: the FastAPI app for ERPs.

FastAPI because the contract is generated from the same types that validate requests
(`/openapi.json`, kept in the repo as `worker/api/openapi.json`), and because it runs on
any ASGI server (uvicorn here) with the synchronous intake service in its thread pool.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from worker.api.access_log import AccessLogMiddleware
from worker.api.errors import install_error_handlers
from worker.api.limits import AuthGateMiddleware, BodyLimitMiddleware
from worker.api.routes import cancel, health, metrics, read, submit
from worker.api.services import Services
from worker.settings import Settings

API_VERSION = "1.0.0"
JSON_SLACK_BYTES = 16 * 1024  # the JSON around the base64 XML


class BodyLimit:
    """Max body bytes per content type: the XML itself, or its base64 inside JSON."""

    def __init__(self, max_xml_bytes: int) -> None:
        self.xml = max_xml_bytes
        self.json = 4 * -(-max_xml_bytes // 3) + JSON_SLACK_BYTES

    def __call__(self, content_type: str) -> int:
        return self.json if content_type == submit.JSON_TYPE else self.xml


def create_api(settings: Settings, *, publish: bool = True) -> FastAPI:
    """The app. Database and broker are opened when the server starts (lifespan).

    ``publish=False`` stores invoices without ringing the broker (the sweeper rings them).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = Services.start(settings, publish=publish)
        app.state.services = services
        try:
            yield
        finally:
            services.close()

    app = FastAPI(
        title="Billing intake API",
        version=API_VERSION,
        summary="Submit sealed CFDI 4.0 invoices for stamping through Finkok; follow them.",
        docs_url="/docs",  # interactive docs for integrators (the contract: /openapi.json)
        redoc_url=None,
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.include_router(submit.router)
    app.include_router(read.router)
    app.include_router(cancel.router)  # issue 16: cancellations
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.add_middleware(BodyLimitMiddleware, limit_for=BodyLimit(settings.max_xml_bytes),
                       body_timeout_s=settings.api_body_timeout_s)
    app.add_middleware(AuthGateMiddleware)  # outside the body limit: no key, no body read
    app.add_middleware(AccessLogMiddleware)  # added last: outermost, sees every answer
    return app
