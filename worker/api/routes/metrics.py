"""GET /metrics: the Prometheus endpoint (worker.ops.metrics), no API key, not in the
OpenAPI contract. The figures come from the database at each scrape."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from worker.api.services import services_of
from worker.ops.metrics import create_registry

router = APIRouter()


def _registry(request: Request) -> CollectorRegistry:
    registry: CollectorRegistry | None = getattr(request.app.state, "metrics_registry", None)
    if registry is None:  # one per app, on the engine the API already holds
        registry = create_registry(services_of(request).engine)
        request.app.state.metrics_registry = registry
    return registry


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    """Prometheus text, or OpenMetrics when the scraper asks for it (Accept), like
    `billing metrics`. A sync route: FastAPI runs it in its thread pool."""
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encoder(_registry(request)), media_type=content_type)
